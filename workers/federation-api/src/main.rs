//! `myelin-federation-api`: the federation endpoints alone, for split
//! deployments; replicas are interchangeable.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("federation-api", |deps| {
        vec![myelin_federation_api::role(deps)]
    })
}

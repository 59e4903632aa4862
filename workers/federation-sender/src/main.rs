//! `myelin-federation-sender`: outbound federation alone, for split
//! deployments; replicas share the destinations through partition leases.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("federation-sender", |deps| {
        vec![myelin_federation_sender::role(deps)]
    })
}

//! `myelin-client-api`: the client API role alone, for split deployments.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("client-api", |deps| vec![myelin_client_api::role(deps)])
}

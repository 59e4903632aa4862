//! `myelin-gateway`: the HTTP entry of split deployments, proxying each
//! request to the role that serves it.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("gateway", |deps| vec![myelin_gateway::role(deps)])
}

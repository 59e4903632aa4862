//! `myelin-pusher`: push delivery alone, for split deployments; replicas
//! share the users through partition leases.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("pusher", |deps| vec![myelin_pusher::role(deps)])
}

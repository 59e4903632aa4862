//! `myelin-synchrotron`: the `/sync` role alone, for split deployments.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("synchrotron", |deps| vec![myelin_synchrotron::role(deps)])
}

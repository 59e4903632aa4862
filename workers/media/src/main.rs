//! `myelin-media`: the content repository alone, for split deployments.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("media", |deps| vec![myelin_media::role(deps)])
}

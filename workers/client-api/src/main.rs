fn main() -> std::process::ExitCode {
    eprintln!("myelin-client-api runs as a role of `myelin run` until split workers are wired up");
    std::process::ExitCode::from(64)
}

//! The `main` of a one-role worker binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use myelin_config::Config;

use crate::{Deps, Role};

/// Exit code for bad usage or configuration (sysexits' EX_USAGE).
const EX_USAGE: u8 = 64;

/// Sets the allocator's options first, then reads `-c PATH` (or
/// `MYELIN_CONFIG_PATH`, or `/data/homeserver.yaml`),
/// opens the store and bus the config names, and serves the roles `build`
/// makes until SIGTERM.
pub fn worker_main(role: &'static str, build: fn(&Deps) -> Vec<Arc<dyn Role>>) -> ExitCode {
    crate::tune_allocator();
    let path = config_path_from_args();
    let loaded = match myelin_config::load(&path) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    crate::init_tracing(Some(&loaded.config));
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match build_runtime(&loaded.config) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let deps = Deps::open(loaded.config, role).await?;
        let roles = build(&deps);
        crate::run_roles(&deps, roles, |_| {}).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime, with `runtime_threads` workers if the config sets it.
pub fn build_runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.runtime_threads {
        builder.worker_threads(threads);
    }
    builder.enable_all().build()
}

fn config_path_from_args() -> PathBuf {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if (arg == "-c" || arg == "--config-path")
            && let Some(path) = args.next()
        {
            return PathBuf::from(path);
        }
    }
    std::env::var_os("MYELIN_CONFIG_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/data/homeserver.yaml"))
}

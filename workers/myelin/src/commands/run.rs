//! `myelin run`: every role on one runtime.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use myelin_config::GenerateOptions;
use myelin_process::{Deps, Role};

use super::{config_path, default_data_dir, load_config};

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Path to homeserver.yaml.
    #[arg(short = 'c', long = "config-path")]
    config: Option<PathBuf>,
    /// Generate a config for this server name first if none exists.
    #[arg(long, env = "MYELIN_GENERATE_SERVER_NAME")]
    generate_for: Option<String>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(args.config);
    if let Some(server_name) = args.generate_for.filter(|_| !path.exists()) {
        let data_dir = path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(default_data_dir);
        let generated = myelin_config::generate(&GenerateOptions {
            server_name,
            data_dir,
            report_stats: false,
        })?;
        println!("Generated {}", generated.config_path.display());
    }
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    myelin_process::init_tracing(Some(&config));
    let runtime = myelin_process::build_runtime(&config)?;
    runtime.block_on(async move {
        let deps = Deps::open(config, "myelin").await?;
        let roles: Vec<Arc<dyn Role>> = vec![
            myelin_event_persister::role(&deps),
            myelin_client_api::role(&deps),
            myelin_synchrotron::role(&deps),
            myelin_media::role(&deps),
            myelin_pusher::role(&deps),
            myelin_federation_api::role(&deps),
            myelin_federation_sender::role(&deps),
        ];
        let config = Arc::clone(&deps.config);
        myelin_process::run_roles(&deps, roles, |router| {
            myelin_gateway::edge::add_edge_routes(router, &config);
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

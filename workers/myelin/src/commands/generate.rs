//! `myelin generate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use myelin_config::GenerateOptions;

use super::{EX_USAGE, default_data_dir};

#[derive(Args)]
pub(crate) struct GenerateArgs {
    /// The server name users' IDs end with (`@alice:NAME`).
    #[arg(long, env = "MYELIN_SERVER_NAME")]
    server_name: Option<String>,
    /// Where to write the files (default `/data` in a container, `./data` elsewhere).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `yes` or `no`, as SYNAPSE_REPORT_STATS.
    #[arg(long, env = "SYNAPSE_REPORT_STATS", default_value = "no")]
    report_stats: String,
}

pub(crate) fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let Some(server_name) = args
        .server_name
        .or_else(|| std::env::var("SYNAPSE_SERVER_NAME").ok())
    else {
        eprintln!("error: --server-name (or MYELIN_SERVER_NAME / SYNAPSE_SERVER_NAME) is required");
        return Ok(ExitCode::from(EX_USAGE));
    };
    let options = GenerateOptions {
        server_name,
        data_dir: args.data_dir.unwrap_or_else(default_data_dir),
        report_stats: matches!(
            args.report_stats.to_ascii_lowercase().as_str(),
            "yes" | "true" | "1"
        ),
    };
    match myelin_config::generate(&options) {
        Ok(generated) => {
            println!("Wrote config to {}", generated.config_path.display());
            println!(
                "Wrote signing key to {}",
                generated.signing_key_path.display()
            );
            println!(
                "Wrote log config to {}",
                generated.log_config_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

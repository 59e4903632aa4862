//! The subcommands.

mod generate;
mod register_user;
mod run;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad usage or configuration (sysexits' EX_USAGE).
pub(crate) const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(name = "myelin", version, about = "Myelin Matrix homeserver")]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write homeserver.yaml, a signing key and a log config into a data directory.
    Generate(generate::GenerateArgs),
    /// Run every role in one process.
    Run(run::RunArgs),
    /// Create a user through the shared-secret admin API (like register_new_matrix_user).
    RegisterUser(register_user::RegisterUserArgs),
    /// Print an argon2id hash of a password for the database (like hash_password).
    HashPassword(users::HashPasswordArgs),
    /// Grant or revoke server admin rights.
    SetAdmin(users::SetAdminArgs),
}

pub(crate) fn dispatch(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Generate(args) => generate::generate(args),
        Command::Run(args) => run::run(args),
        Command::RegisterUser(args) => register_user::register_user(args),
        Command::HashPassword(args) => users::hash_password(args),
        Command::SetAdmin(args) => users::set_admin(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `-c` / `MYELIN_CONFIG_PATH` / `SYNAPSE_CONFIG_PATH`, else `<data dir>/homeserver.yaml`.
pub(crate) fn config_path(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("MYELIN_CONFIG_PATH").map(PathBuf::from))
        .or_else(|| std::env::var_os("SYNAPSE_CONFIG_PATH").map(PathBuf::from))
        .unwrap_or_else(|| default_data_dir().join("homeserver.yaml"))
}

/// `/data` inside a container (as Synapse's image), `./data` elsewhere.
pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(dir) =
        std::env::var_os("MYELIN_DATA_DIR").or_else(|| std::env::var_os("SYNAPSE_DATA_DIR"))
    {
        return PathBuf::from(dir);
    }
    let in_container =
        std::path::Path::new("/.dockerenv").exists() || std::env::var_os("container").is_some();
    if in_container {
        PathBuf::from("/data")
    } else {
        PathBuf::from("data")
    }
}

/// Loads the config and prints every warning once.
pub(crate) fn load_config(path: &std::path::Path) -> Result<myelin_config::Config, ExitCode> {
    match myelin_config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(loaded.config)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Err(ExitCode::from(EX_USAGE))
        }
    }
}

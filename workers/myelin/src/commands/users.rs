//! `myelin hash-password` and `myelin set-admin`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{EX_USAGE, config_path, load_config};

#[derive(Args)]
pub(crate) struct HashPasswordArgs {
    /// The password; prompted for twice when absent.
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Accepted for compatibility with Synapse's tool; the hash needs no config.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
}

pub(crate) fn hash_password(args: HashPasswordArgs) -> anyhow::Result<ExitCode> {
    let password = match args.password {
        Some(password) => password,
        None => match prompt_password_twice()? {
            Some(password) => password,
            None => {
                eprintln!("Passwords do not match");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let hash = myelin_client_api::hash_password(&password)
        .map_err(|error| anyhow::anyhow!(error.error))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

/// Two prompts without echo on a terminal; two lines from a pipe.
pub(crate) fn prompt_password_twice() -> anyhow::Result<Option<String>> {
    let read = |prompt: &str| -> anyhow::Result<String> {
        if std::io::stdin().is_terminal() {
            Ok(rpassword::prompt_password(prompt)?)
        } else {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        }
    };
    let first = read("Password: ")?;
    let second = read("Confirm password: ")?;
    Ok((first == second).then_some(first))
}

#[derive(Args)]
pub(crate) struct SetAdminArgs {
    /// The full user ID, e.g. @alice:example.org.
    user_id: String,
    /// `true` to grant, `false` to revoke.
    admin: String,
    #[arg(short = 'c', long = "config-path")]
    config: Option<PathBuf>,
}

pub(crate) fn set_admin(args: SetAdminArgs) -> anyhow::Result<ExitCode> {
    let is_admin = match args.admin.as_str() {
        "true" | "yes" | "1" => true,
        "false" | "no" | "0" => false,
        other => {
            eprintln!("error: expected true or false, got {other:?}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let config = match load_config(&config_path(args.config)) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = myelin_process::open_store(&config).await?;
        match store.set_admin(&args.user_id, is_admin).await {
            Ok(()) => {
                println!(
                    "{} is {}an admin",
                    args.user_id,
                    if is_admin { "now " } else { "no longer " }
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(myelin_store::StoreError::NotFound) => {
                eprintln!("error: no such user {}", args.user_id);
                Ok(ExitCode::FAILURE)
            }
            Err(error) => Err(error.into()),
        }
    })
}

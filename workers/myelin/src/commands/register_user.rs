//! `myelin register-user`: the shared-secret registration of Synapse's
//! `register_new_matrix_user`, with the same flags.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::{EX_USAGE, config_path, load_config};
use crate::commands::users::prompt_password_twice;

#[derive(Args)]
pub(crate) struct RegisterUserArgs {
    /// Local part of the new user (prompted for when absent).
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Make the user a server admin.
    #[arg(short = 'a', long, conflicts_with = "no_admin")]
    admin: bool,
    /// Make a normal user (the default when not asked).
    #[arg(long)]
    no_admin: bool,
    /// Config file holding registration_shared_secret.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// The shared secret, instead of a config file.
    #[arg(short = 'k', long = "shared-secret")]
    shared_secret: Option<String>,
    /// The server's client URL.
    #[arg(default_value = "http://localhost:8008")]
    server_url: String,
}

pub(crate) fn register_user(args: RegisterUserArgs) -> anyhow::Result<ExitCode> {
    let secret = match args.shared_secret {
        Some(secret) => secret,
        None => {
            let config = match load_config(&config_path(args.config)) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            let Some(secret) = config.registration_shared_secret else {
                eprintln!("error: registration_shared_secret is not set in the config");
                return Ok(ExitCode::from(EX_USAGE));
            };
            secret
        }
    };
    let user = match args.user {
        Some(user) => user,
        None => prompt_line("New user localpart: ")?,
    };
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
    let base = args.server_url.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let url = format!("{base}/_synapse/admin/v1/register");
        let nonce: Value = client.get(&url).send().await?.error_for_status()?.json().await?;
        let nonce = nonce["nonce"].as_str().unwrap_or_default().to_owned();
        let mac = myelin_client_api::RegistrationMac { nonce: &nonce, user: &user, password: &password, admin: args.admin, user_type: None }.hex(&secret);
        let body = json!({"nonce": nonce, "username": user, "password": password, "admin": args.admin, "mac": mac});
        let response = client.post(&url).json(&body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            println!("Success! {}", answer["user_id"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("ERROR! Received {status}: {}", answer["error"].as_str().unwrap_or_default());
            Ok(ExitCode::FAILURE)
        }
    })
}

fn prompt_line(prompt: &str) -> anyhow::Result<String> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

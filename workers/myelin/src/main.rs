//! `myelin`: every role in one process, plus the operator commands that
//! Synapse's image offers (`generate`, `register_new_matrix_user`,
//! `hash_password`) under one binary.

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    myelin_process::tune_allocator();
    let cli = commands::Cli::parse();
    commands::dispatch(cli)
}

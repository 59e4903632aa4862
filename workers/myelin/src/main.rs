//! `myelin`: every role in one process, plus the operator commands that
//! Synapse's image offers (`generate`, `register_new_matrix_user`,
//! `hash_password`) under one binary.

mod commands;

/// glibc's allocator keeps freed memory in per-thread arenas (a password
/// hash's 7 MiB stays behind on every thread that ever hashed); mimalloc
/// gives it back and is faster for the many small allocations of JSON.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    commands::dispatch(cli)
}

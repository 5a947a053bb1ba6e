//! The `vmtool` binary: parse arguments, run, exit with the status the run chose.

use clap::Parser;

// Listing a large spool allocates a few small strings per message; mimalloc
// keeps that off the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use vmtool::app::{self, Environment};
use vmtool::cli::Cli;
use vmtool::error::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match Environment::from_process() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("vmtool: {e}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = app::run(cli, env, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code as u8)
}

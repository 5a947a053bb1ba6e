//! The `vmtool` binary: parse arguments, run, exit with the status the run chose.

use clap::Parser;
use std::io::{IsTerminal, Write};

// Listing a large spool allocates a few small strings per message; mimalloc
// keeps that off the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use vmtool::cmd::{self, cli::Cli, Environment};
use vmtool::error::Exit;

fn main() -> ExitCode {
    // A completion script asking for candidates: answered, then exit.
    cmd::complete_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: clap ignores a failed write; a full disk must not pass as success.
        Err(e) if !e.use_stderr() && !std::io::stdout().is_terminal() => {
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(e.render().to_string().as_bytes())
                .and_then(|()| stdout.flush());
            return match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(w) if w.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(w) => {
                    eprintln!("vmtool: cannot write standard output: {w}");
                    ExitCode::from(Exit::Partial as u8)
                }
            };
        }
        Err(e) => e.exit(),
    };
    let env = match Environment::from_process() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("vmtool: {e}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = cmd::run(cli, env, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code as u8)
}

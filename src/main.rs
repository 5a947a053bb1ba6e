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
    if matches!(cli.command, cmd::cli::Command::Watch(_)) {
        give_freed_memory_back_at_once();
    }
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = cmd::run(cli, env, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code as u8)
}

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; checked by the test below).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `watch` runs for months as a service: what its start-up scan freed goes back to the
/// system now rather than after mimalloc's delay, which at 1,000,000 messages kept a few
/// MB more resident (the peak counts). Listings keep the delay: it saves system calls.
fn give_freed_memory_back_at_once() {
    // SAFETY: sets one of mimalloc's options; any value is valid for this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_whose_default_is_one_second() {
        // SAFETY: reads one of mimalloc's options.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        // mimalloc v3 (options.c): purge_delay is the only option that defaults to 1000 ms.
        assert_eq!(delay, 1000);
    }
}

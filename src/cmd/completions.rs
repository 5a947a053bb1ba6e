//! `vmtool completions SHELL` and the hidden `vmtool man --out DIR`: both
//! generated from the clap definition, so they cannot drift from it.

use super::cli::Cli;
use super::prelude::*;
use std::path::Path;

pub fn exec(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<Exit> {
    // clap_complete panics on a write error: generate into memory first.
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "vmtool", &mut script);
    out.write_all(&script).map_err(out_err).map(|()| Exit::Ok)
}

/// Writes `vmtool.1` and one page per subcommand (clap_mangen).
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The pages carry the release, not the commit `--version` names: they are committed.
    let cmd = <Cli as clap::CommandFactory>::command().version(env!("CARGO_PKG_VERSION"));
    clap_mangen::generate_to(cmd, dir)
}

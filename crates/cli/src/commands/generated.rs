//! Completions and the man page, generated from the clap definition.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::{CmdResult, Exit, Failure};

pub fn completions(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "sfbpatch", &mut std::io::stdout());
    Ok(Exit::Success)
}

pub fn man() -> CmdResult {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(Failure::internal)?;
    crate::output::data(&String::from_utf8_lossy(&out))?;
    Ok(Exit::Success)
}

//! The `sfbpatch` binary: the command line and the glue between the libraries. Everything that
//! touches the terminal, the environment or files lives here.

mod cli;
mod commands;
mod crash;
mod exit;
mod input;
mod output;
mod policy;
mod progress;
mod summary;

use std::io::Write;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let color = output::use_color(cli.color);
    let result = match cli.command {
        Command::Topology(cmd) => commands::topology::run(cmd),
        Command::Plan(args) => commands::plan::run(args),
        Command::Package(cmd) => commands::package::run(cmd),
        Command::Lab(cmd) => commands::lab::run(cmd),
        Command::Probe(args) => commands::probe::run(args),
        Command::Apply(args) => commands::apply::apply(args, color),
        Command::Resume(args) => commands::apply::resume(args, color),
        Command::Standby(args) => commands::standby::run(args, color),
        Command::Status(args) => commands::status::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Unlock(args) => commands::status::unlock(args),
        Command::Approve(args) => commands::status::approve(args),
        Command::Policy(cmd) => commands::policy::run(cmd),
        Command::Demo(args) => commands::demo::run(args, color),
        Command::Completions { shell } => commands::generated::completions(shell),
        Command::Man => commands::generated::man(),
    };
    let exit = match result {
        Ok(exit) => exit,
        Err(failure) => {
            let mut stderr = std::io::stderr().lock();
            let prefix = if color {
                "\x1b[1;31merror\x1b[0m"
            } else {
                "error"
            };
            let _ = writeln!(stderr, "{prefix}: {:#}", failure.error);
            failure.exit
        }
    };
    std::process::ExitCode::from(exit as u8)
}

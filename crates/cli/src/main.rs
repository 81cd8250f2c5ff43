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

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let name = command_name(&matches);
    let color = output::use_color(cli.color);
    let result = output::init_log(cli.verbose, cli.quiet, cli.log_file.as_deref(), color)
        .and_then(|()| dispatch(cli.command, &name, color));
    let exit = match result {
        Ok(exit) => exit,
        Err(failure) => {
            let mut stderr = std::io::stderr().lock();
            let prefix = if color {
                "\x1b[1;31merror\x1b[0m"
            } else {
                "error"
            };
            // An error may quote a server or a topology: nothing in it may drive the terminal.
            let message = format!("{:#}", failure.error);
            tracing::debug!(
                exit = failure.exit as u8,
                "{}",
                output::printable_lines(&message)
            );
            let _ = writeln!(stderr, "{prefix}: {}", output::printable_lines(&message));
            failure.exit
        }
    };
    tracing::debug!(exit = exit as u8, "sfbpatch ends");
    std::process::ExitCode::from(exit as u8)
}

/// The subcommands asked for, by name (`topology show`), for the log.
fn command_name(matches: &clap::ArgMatches) -> String {
    let mut names = Vec::new();
    let mut at = matches;
    while let Some((name, sub)) = at.subcommand() {
        names.push(name);
        at = sub;
    }
    names.join(" ")
}

fn dispatch(command: Command, name: &str, color: bool) -> exit::CmdResult {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        command = name,
        pid = std::process::id(),
        "sfbpatch starts"
    );
    match command {
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
        Command::Serve(args) => commands::serve::run(args),
        Command::Retry(args) => commands::retry::run(args),
        Command::Policy(cmd) => commands::policy::run(cmd),
        Command::Demo(args) => commands::demo::run(args, color),
        Command::Completions { shell } => commands::generated::completions(shell),
        Command::Man(args) => commands::generated::man(args),
    }
}

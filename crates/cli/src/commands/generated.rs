//! Completions and the man pages, generated from the clap definition.

use anyhow::anyhow;
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::exit::{CmdResult, Exit, Failure};

pub fn completions(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "sfbpatch", &mut std::io::stdout());
    Ok(Exit::Success)
}

/// The definition as the pages are made from it: built (each subcommand knows its page's
/// name, `sfbpatch-topology-show`), without clap's `help` subcommand.
fn definition() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Every page's command, the top first, each subcommand after its parent.
fn pages(cmd: &clap::Command) -> Vec<clap::Command> {
    let mut out = vec![cmd.clone()];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.extend(pages(sub));
    }
    out
}

/// A page's name: `sfbpatch`, `sfbpatch-topology-show`.
fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

pub fn man(args: ManArgs) -> CmdResult {
    let top = definition();
    if let Some(dir) = &args.all {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::bad_input(anyhow!("cannot create {}: {e}", dir.display())))?;
        let mut written = 0;
        for page in pages(&top) {
            clap_mangen::Man::new(page).generate_to(dir).map_err(|e| {
                Failure::bad_input(anyhow!(
                    "cannot write a man page into {}: {e}",
                    dir.display()
                ))
            })?;
            written += 1;
        }
        crate::output::note(&format!(
            "wrote {written} man pages into {} (sfbpatch.1 and one per subcommand)",
            dir.display()
        ));
        return Ok(Exit::Success);
    }
    let page = if args.command.is_empty() {
        top
    } else {
        // `topology show`, `topology-show` and `sfbpatch-topology-show` name one page.
        let asked = args.command.join("-");
        let wanted = if asked.starts_with("sfbpatch-") {
            asked.clone()
        } else {
            format!("sfbpatch-{asked}")
        };
        let all = pages(&top);
        let Some(found) = all.iter().find(|c| page_name(c) == wanted) else {
            let names: Vec<String> = all
                .iter()
                .skip(1)
                .map(|c| {
                    page_name(c)
                        .trim_start_matches("sfbpatch-")
                        .replace('-', " ")
                })
                .collect();
            return Err(Failure::bad_input(anyhow!(
                "sfbpatch has no subcommand {:?}; the pages are: {}",
                args.command.join(" "),
                names.join(", ")
            )));
        };
        found.clone()
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(Failure::internal)?;
    crate::output::data(&String::from_utf8_lossy(&out))?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page_named_after_it() {
        let top = definition();
        let names: Vec<String> = pages(&top)
            .iter()
            .map(|c| page_name(c).to_string())
            .collect();
        for name in [
            "sfbpatch",
            "sfbpatch-apply",
            "sfbpatch-retry",
            "sfbpatch-topology",
            "sfbpatch-topology-show",
            "sfbpatch-lab-shell",
            "sfbpatch-man",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.ends_with("-help")), "{names:?}");
    }
}

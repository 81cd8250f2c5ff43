//! The progress display as an operator sees it: `sfbpatch apply` runs in a real terminal
//! emulator (tmux, `scripts/tmux.sh` installs it) of a given size, and the tests read its
//! screen back, with colours, while the run goes on.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Scratch;

const SE1: &str = "se1.dublin.demo.example";

/// A tmux server of its own (one socket per test) running one command in a window of
/// `cols` x `rows`; killed when dropped.
struct Screen {
    socket: String,
}

impl Screen {
    /// `None` (after saying so) when tmux is not installed.
    fn start(
        dir: &Path,
        cols: u16,
        rows: u16,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Option<Self> {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        sfbpatch_testkit::need(
            found.then_some(()),
            "tmux is not installed (scripts/tmux.sh installs it)",
        )?;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = format!(
            "sfbpatch-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut command = format!("cd '{}' && env -u NO_COLOR", dir.display());
        for (k, v) in env {
            command.push_str(&format!(" {k}='{v}'"));
        }
        command.push_str(&format!(" '{}'", env!("CARGO_BIN_EXE_sfbpatch")));
        for a in args {
            command.push_str(&format!(" '{a}'"));
        }
        // The exit code stays on the screen; the window stays open to be read.
        command.push_str("; echo \"EXIT=$?\"; sleep 600");
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg(command)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session");
        Some(Screen { socket })
    }

    /// The screen as it is now, with colours as SGR sequences.
    fn capture(&self) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-e", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Everything the window showed, scrolled-away lines included, without colours.
    fn history(&self) -> String {
        let o = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "capture-pane",
                "-p",
                "-S",
                "-",
                "-t",
                "t",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn send(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", keys])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Every screen seen until the command exits (its `EXIT=` line), one every 100 ms.
    fn until_exit(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut screens = Vec::new();
        loop {
            let screen = self.capture();
            let done = screen.contains("EXIT=");
            screens.push(screen);
            if done {
                return screens;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                screens.last().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// Without its colours.
fn plain(screen: &str) -> String {
    let mut out = String::with_capacity(screen.len());
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The line of `server`'s bar on a screen.
fn bar_line<'s>(screen: &'s str, server: &str) -> Option<&'s str> {
    screen
        .lines()
        .find(|l| plain(l).starts_with(server) && l.contains("/14"))
}

/// The outage clock a bar line shows (`mm:ss`).
fn outage_clock(line: &str) -> Option<String> {
    let plain = plain(line);
    let (_, rest) = plain.split_once(" outage ")?;
    Some(rest.split_whitespace().next()?.to_string())
}

fn exit_code(screens: &[String]) -> Option<i32> {
    let last = plain(screens.last()?);
    let line = last.lines().find(|l| l.starts_with("EXIT="))?;
    line["EXIT=".len()..].trim().parse().ok()
}

/// A Standard Edition server whose installer takes 40 simulated minutes, at one simulated
/// minute per 0.25 s: its outage passes the 30-minute line in the middle of the install.
fn long_install(s: &Scratch) {
    s.write(
        "faults.toml",
        "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nduration_minutes = 40\n",
    );
    s.lab_init("lab", &["--speed", "240", "--faults", "faults.toml"]);
}

const APPLY_SE1: &[&str] = &[
    "apply",
    "demo-topology.xml",
    "--package",
    "demo-package.toml",
    "--lab",
    "lab",
    "--state",
    "state.db",
    "--yes",
    "--only",
    SE1,
];

#[test]
#[ignore = "needs tmux: scripts/test installs it and runs this"]
fn the_outage_clock_ticks_through_a_long_step_turns_amber_then_red_and_warns_at_the_line() {
    let s = Scratch::new();
    long_install(&s);
    let Some(screen) = Screen::start(s.path(), 120, 24, &[("TERM", "xterm-256color")], APPLY_SE1)
    else {
        return;
    };
    let screens = screen.until_exit(Duration::from_secs(120));
    assert_eq!(exit_code(&screens), Some(0), "{}", screens.last().unwrap());

    // While the installer runs, the clock moves on its own.
    let installing: Vec<&String> = screens
        .iter()
        .filter(|s| bar_line(s, SE1).is_some_and(|l| l.contains("install-update")))
        .collect();
    let mut clocks: Vec<String> = installing
        .iter()
        .filter_map(|s| outage_clock(bar_line(s, SE1).unwrap()))
        .collect();
    clocks.dedup();
    assert!(
        clocks.len() >= 8,
        "the clock stood still during the install: {clocks:?}"
    );
    assert!(clocks.windows(2).all(|w| w[0] < w[1]), "{clocks:?}");

    // Amber from 80 % of the budget (24:00), red from the budget on, both during the install.
    let colour = |s: &str| {
        let line = bar_line(s, SE1).unwrap();
        let at = line.find(" outage ").unwrap();
        line[..at].ends_with("\x1b[33m") as u8 + 2 * line[..at].ends_with("\x1b[31m") as u8
    };
    let colours: Vec<u8> = installing.iter().map(|s| colour(s)).collect();
    let first_amber = colours.iter().position(|&c| c == 1).expect("amber shown");
    let first_red = colours.iter().position(|&c| c == 2).expect("red shown");
    assert!(first_amber < first_red, "{colours:?}");
    assert!(
        colours[..first_amber].iter().all(|&c| c == 0),
        "{colours:?}"
    );

    // The warning comes at the line, while the installer still runs.
    let warned = installing
        .iter()
        .find(|s| plain(s).contains("exceeds the budget"))
        .expect("the warning shows while install-update runs");
    let clock = outage_clock(bar_line(warned, SE1).unwrap()).unwrap();
    assert!(
        clock.as_str() >= "30:00" && clock.as_str() < "36:00",
        "{clock}"
    );
    assert!(
        plain(warned).contains(&format!(
            "warning: {SE1}: outage 30.0 min exceeds the budget 30.0 min"
        )),
        "{}",
        plain(warned)
    );
}

#[test]
#[ignore = "needs tmux: scripts/test installs it and runs this"]
fn sixty_servers_on_a_24_row_terminal_keep_the_running_ones_and_the_overall_line_visible() {
    let s = Scratch::new();
    s.write("big.xml", &sfbpatch_topology::generate(40, 7));
    let o = s.run(&[
        "lab",
        "init",
        "lab",
        "--topology",
        "big.xml",
        "--speed",
        "1200",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let args = [
        "apply",
        "big.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
        "--max-parallel",
        "40",
    ];
    let Some(screen) = Screen::start(s.path(), 120, 24, &[("TERM", "xterm-256color")], &args)
    else {
        return;
    };
    let screens = screen.until_exit(Duration::from_secs(300));
    let last = plain(screens.last().unwrap());
    let servers: usize = last
        .lines()
        .find_map(|l| {
            l.split_once(": patching ")?
                .1
                .split_once(' ')?
                .0
                .parse()
                .ok()
        })
        .or_else(|| {
            screens.iter().find_map(|s| {
                plain(s).lines().find_map(|l| {
                    l.split_once(": patching ")?
                        .1
                        .split_once(' ')?
                        .0
                        .parse()
                        .ok()
                })
            })
        })
        .expect("the run says how many servers it patches");
    assert!(servers >= 60, "{servers} servers");

    let (mut crowded, mut torn) = (0, 0);
    for screen in &screens[..screens.len() - 1] {
        let text = plain(screen);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows.len() <= 24, "{text}");
        let bars = rows.iter().filter(|l| l.contains("/14")).count();
        let overall = rows
            .iter()
            .rposition(|l| l.contains(" done, ") && l.contains(" running"));
        if bars == 0 && overall.is_none() {
            continue; // before the first server, or after the last
        }
        // tmux may read a frame while it is being written: the block's end is not there yet.
        let Some(overall) = overall else {
            torn += 1;
            assert!(torn * 20 <= screens.len(), "no overall line:\n{text}");
            continue;
        };
        // The overall line is the last line drawn; the bars stay inside the terminal.
        assert!(
            rows[overall + 1..].iter().all(|l| l.trim().is_empty()),
            "{text}"
        );
        assert!(bars <= 21, "{bars} bars on 24 rows:\n{text}");
        let running: usize = rows[overall]
            .split(", ")
            .find_map(|p| p.strip_suffix(" running")?.parse().ok())
            .unwrap();
        assert_eq!(bars, running.min(21), "{text}");
        if running > 21 {
            crowded += 1;
            assert!(
                rows[overall].contains("running without a bar here"),
                "{text}"
            );
        }
    }
    assert!(
        crowded > 0,
        "never more servers running than rows: the test shows nothing"
    );
    // Finished servers scrolled away as lines, one each; none left a bar behind.
    let history = screen.history();
    let finished = history
        .lines()
        .filter(|l| l.ends_with(": succeeded") || l.contains(": succeeded, outage "))
        .count();
    assert_eq!(finished, servers, "{history}");
    assert!(!last.lines().any(|l| l.contains("/14")), "{last}");
}

#[test]
#[ignore = "needs tmux: scripts/test installs it and runs this"]
fn ctrl_c_leaves_a_clean_screen_and_says_what_happens() {
    let s = Scratch::new();
    long_install(&s);
    let args: Vec<&str> = APPLY_SE1
        .iter()
        .copied()
        .filter(|a| *a != "--only" && *a != SE1)
        .chain(["--max-parallel", "2"])
        .collect();
    let Some(screen) = Screen::start(s.path(), 120, 24, &[("TERM", "xterm-256color")], &args)
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !plain(&screen.capture()).contains("install-update") {
        assert!(Instant::now() < deadline, "{}", screen.capture());
        std::thread::sleep(Duration::from_millis(100));
    }
    screen.send("C-c");
    let screens = screen.until_exit(Duration::from_secs(180));
    let last = plain(screens.last().unwrap());
    assert_eq!(exit_code(&screens), Some(4), "{last}");
    // Said once, above the bars: it scrolled away with the lines after it, into the history.
    let history = screen.history();
    let said: Vec<&str> = history
        .lines()
        .filter(|l| l.contains("interrupted: no new server starts"))
        .collect();
    assert_eq!(said.len(), 1, "{history}");
    // No bar and no overall line is left on the screen.
    assert!(
        !last
            .lines()
            .any(|l| l.contains("/14") || l.contains(" done, ")),
        "{last}"
    );
}

#[test]
#[ignore = "needs tmux: scripts/test installs it and runs this"]
fn a_dumb_terminal_gets_plain_lines_with_the_warnings() {
    let s = Scratch::new();
    long_install(&s);
    let Some(screen) = Screen::start(s.path(), 200, 50, &[("TERM", "dumb")], APPLY_SE1) else {
        return;
    };
    let screens = screen.until_exit(Duration::from_secs(120));
    let last = plain(screens.last().unwrap());
    assert_eq!(exit_code(&screens), Some(0), "{last}");
    assert!(
        last.contains(&format!(
            "warning: {SE1}: outage 30.0 min exceeds the budget 30.0 min"
        )),
        "{last}"
    );
    assert!(
        last.contains(&format!("{SE1}: install-update ok")),
        "{last}"
    );
    assert!(
        screens
            .iter()
            .all(|s| !s.contains("/14") && !s.contains('\x1b')),
        "bars or colours on a dumb terminal"
    );
}

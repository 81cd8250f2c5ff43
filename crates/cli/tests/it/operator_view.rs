//! What the operator sees: a man page for every subcommand, free text that cannot drive the
//! terminal, lease expiry as local time with the seconds left, and a second Ctrl-C that says
//! what it did and exits as an interrupted run.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{self, Scratch, code, stderr, stdout};

const SE1: &str = "se1.dublin.demo.example";

#[test]
fn every_page_the_man_pages_name_can_be_generated() {
    let s = Scratch::new();
    let o = s.run(&["man", "--all", "pages"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "pages go to the directory");
    let dir = s.path().join("pages");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for page in [
        "sfbpatch.1",
        "sfbpatch-apply.1",
        "sfbpatch-retry.1",
        "sfbpatch-topology.1",
        "sfbpatch-topology-show.1",
        "sfbpatch-lab-shell.1",
        "sfbpatch-man.1",
    ] {
        assert!(files.iter().any(|f| f == page), "{page} in {files:?}");
    }
    assert!(!files.iter().any(|f| f.contains("help")), "{files:?}");
    // Every page a page refers to (`sfbpatch\-apply(1)`) is there.
    for f in &files {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        for (i, _) in text.match_indices("(1)") {
            let name: String = text[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '\\')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
                .replace('\\', "");
            if name.starts_with("sfbpatch") {
                assert!(
                    files.contains(&format!("{name}.1")),
                    "{f} names {name}(1), which is not among {files:?}"
                );
            }
        }
    }

    // One page, by the words typed after `sfbpatch`, or by its name.
    let o = s.run(&["man", "topology", "show"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.starts_with(".ie"), "roff: {page}");
    assert!(page.contains(".TH sfbpatch-topology-show 1"), "{page}");
    assert_eq!(
        page,
        std::fs::read_to_string(dir.join("sfbpatch-topology-show.1")).unwrap()
    );
    assert_eq!(stdout(&s.run(&["man", "sfbpatch-topology-show"])), page);
    let retry = stdout(&s.run(&["man", "retry"]));
    assert!(
        retry.contains("sfbpatch\\-retry") && retry.contains("resume"),
        "{retry}"
    );
    let top = stdout(&s.run(&["man"]));
    assert!(
        top.contains(".TH sfbpatch 1") && top.contains("sfbpatch\\-retry(1)"),
        "{top}"
    );

    let o = s.run(&["man", "topology", "nonsense"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sfbpatch has no subcommand \"topology nonsense\"")
            && stderr(&o).contains("topology show"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn topology_show_escapes_control_characters_of_free_text() {
    let s = Scratch::new();
    // A site name that would set the terminal's title, clear the screen and ring the bell.
    let site = r#"Ber\u001b]0;pwned\u0007lin\u001b[2J\r\u202e"#;
    s.write(
        "esc.toml",
        &format!(
            "[[site]]\nname = \"{site}\"\n\n[[pool]]\nfqdn = \"se.lab.example.com\"\nsite = \"{site}\"\nproduct = \"2019\"\nedition = \"standard\"\n"
        ),
    );
    let o = s.run(&["topology", "show", "esc.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{out:?}"
    );
    assert!(
        out.contains(r"site Ber\u{1b}]0;pwned\u{7}lin\u{1b}[2J\u{d}\u{202e}"),
        "{out}"
    );
    // JSON keeps the text as it is, escaped by JSON itself.
    let o = s.run(&["topology", "show", "esc.toml", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        json["pools"][0]["site"],
        "Ber\u{1b}]0;pwned\u{7}lin\u{1b}[2J\r\u{202e}"
    );
    assert!(!stdout(&o).contains('\u{1b}'));
}

/// A 13-digit number: epoch milliseconds printed raw.
fn has_epoch_ms(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|n| n.len() >= 13)
}

#[test]
fn a_lease_shows_its_holder_and_expiry_as_local_time_with_the_seconds_left() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    // The controller dies at its first journal append, holding its lease for an hour, and
    // without USER: the holder is its user id.
    let o = common::bin()
        .current_dir(s.path())
        .args(common::apply_args(
            &["--lab", "lab"],
            &[SE1],
            &["--lease-ttl", "3600"],
        ))
        .env(common::KILL_ENV, "1")
        .env_remove("USER")
        .env_remove("USERNAME")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert_ne!(code_or_signal(&o), 0, "{}", stderr(&o));
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();

    let o = s.run(&["status", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let line = out
        .lines()
        .skip_while(|l| *l != "leases")
        .nth(1)
        .unwrap_or_else(|| panic!("a leases section: {out}"));
    assert!(line.contains(SE1), "{line}");
    assert!(
        line.contains(&format!("held by uid {uid} (controller ")),
        "{line}"
    );
    assert!(
        line.contains(", gone) until "),
        "its process is gone: {line}"
    );
    assert!(line.ends_with(" s left"), "{line}");
    let left: u64 = line
        .rsplit(", ")
        .next()
        .unwrap()
        .trim_end_matches(" s left")
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&left), "{line}");
    assert!(!has_epoch_ms(&out), "no raw epoch milliseconds: {out}");

    let o = s.run(&["unlock", SE1, "--state", "state.db", "--yes"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("broke the lease of run 1 (uid {uid} on "))
            && err.contains(&format!("on pool {SE1}, until "))
            && err.trim_end().ends_with(" s left"),
        "{err}"
    );
    assert!(!has_epoch_ms(&err), "{err}");
    let out = stdout(&s.run(&["status", "--state", "state.db"]));
    assert!(!out.contains("\nleases\n"), "{out}");
}

fn code_or_signal(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn status_text_shows_durations_in_one_format() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let o = s.run(&common::apply_args(&["--lab", "lab"], &[SE1], &[]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&s.run(&["status", "--state", "state.db"]));
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(SE1) && l.contains("succeeded"))
        .unwrap_or_else(|| panic!("{out}"));
    let outage = line
        .split(", outage ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        outage.ends_with(" min") || outage.ends_with(" s"),
        "`25.2 min` or `42 s`: {line}"
    );
}

#[cfg(unix)]
fn interrupt(pid: u32) {
    let o = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(o.success());
}

#[cfg(unix)]
#[test]
fn a_second_ctrl_c_stops_at_once_saying_so_and_exits_as_interrupted() {
    let s = Scratch::new();
    // One simulated second per second: the run lasts long enough to be interrupted.
    s.lab_init("lab", &["--speed", "1"]);
    let mut child = common::bin()
        .current_dir(s.path())
        .args(common::apply_args(&["--lab", "lab"], &[SE1], &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr_pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<String>, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.iter().any(|l| l.contains(what)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => return false,
            }
        }
        true
    };
    assert!(wait_for(&mut seen, "started"), "the run starts: {seen:?}");
    interrupt(pid);
    assert!(
        wait_for(&mut seen, "interrupted:"),
        "the first Ctrl-C is told: {seen:?}"
    );
    interrupt(pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a second Ctrl-C stops at once: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push(line);
    }
    assert_eq!(status.code(), Some(4), "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some(
            "stopped at once: servers in flight were left where they are; `sfbpatch resume` probes them"
        ),
        "{seen:?}"
    );
    // And resume carries it on: the run was left resumable.
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "interrupted", "{status}");
}

/// A server whose name is longer than the usual column pushes the whole column, in the run's
/// summary and in `status`: every row's second column starts where the header's does.
#[test]
fn tables_line_up_around_a_name_longer_than_forty_characters() {
    let s = Scratch::new();
    let long = "se2.a-rather-long-site-name.dublin.demo.example";
    assert!(long.len() > 40);
    let topology = std::fs::read_to_string(s.path().join("demo-topology.xml"))
        .unwrap()
        .replace("se2.dublin.demo.example", long);
    s.write("demo-topology.xml", &topology);
    s.lab_init("lab", &[]);
    let o = s.run(&common::apply_args(&["--lab", "lab"], &[SE1, long], &[]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let summary = stdout(&o);
    // Where each row's second field starts (left-aligned) or ends (right-aligned) must be
    // where the header's does.
    let column = |table: &str, header: &str, second: &str| {
        let lines: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with(header))
            .take_while(|l| !l.trim().is_empty())
            .collect();
        let field = |l: &str| {
            let name_end = l.find(' ').unwrap();
            let start = name_end + l[name_end..].find(|c| c != ' ').unwrap();
            let end = start + l[start..].find(' ').unwrap_or(l.len() - start);
            (start, end)
        };
        let start = lines[0].find(second).unwrap();
        let end = start + second.len();
        for l in &lines[1..] {
            let (s, e) = field(l);
            assert!(s == start || e == end, "{header} table:\n{table}");
        }
        lines.len() - 1
    };
    assert_eq!(column(&summary, "server", "kind"), 2, "{summary}");
    assert_eq!(column(&summary, "pool", "front ends"), 2, "{summary}");
    assert!(summary.contains(long), "{summary}");

    // `status`: the servers' state column, one place on every row.
    let o = s.run(&["status", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let status = stdout(&o);
    let rows: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("  ") && (l.contains(" succeeded ") || l.contains(" pending ")))
        .collect();
    assert_eq!(rows.len(), 2, "{status}");
    let state_at = |l: &str| {
        l.find(" succeeded ")
            .or_else(|| l.find(" pending "))
            .unwrap()
    };
    let first = state_at(rows[0]);
    assert!(rows.iter().all(|l| state_at(l) == first), "{status}");
}

/// Lines count from their own run's start: a second run on the same lab (whose clock went on
/// through the first) starts at T+00:00:00 again, and its times only grow.
#[test]
fn a_second_run_on_the_same_lab_counts_from_its_own_start() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let first = s.run(&common::apply_args(&["--lab", "lab"], &[SE1], &[]));
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let o = s.run(&common::apply_args(
        &["--lab", "lab"],
        &["se2.dublin.demo.example"],
        &[],
    ));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("T+")).collect();
    assert_eq!(
        lines.first().copied(),
        Some("T+00:00:00 run 2: patching 1 server(s)"),
        "{err}"
    );
    let offsets: Vec<&str> = lines.iter().map(|l| &l[..10]).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    // The run took its 25-minute outage and more, not the first run's hours.
    let last = offsets.last().unwrap();
    assert!(("T+00:25:00".."T+01:00:00").contains(last), "{last}\n{err}");
}

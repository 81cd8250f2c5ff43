//! `apply --target ssh` against real OpenSSH servers standing in for Windows hosts: one sshd per
//! lab server on 127.0.0.1 (scripts/sshd-lab.sh), key-only login, a ForceCommand into
//! `sfbpatch lab shell`. The client is sfbpatch's own (russh). Every test asserts the lab's
//! world (`lab show`), as the in-process tests do.
//!
//! sshd is installed when missing (apt-get); the tests skip, saying so, only when it cannot be.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, NEW, Scratch, assert_patched, code, item, repo, stderr, stdout};

/// Every server of the demo topology the lab has.
const ALL: [&str; 13] = common::DEMO_SERVERS;

const SE1: &str = "se1.dublin.demo.example";

fn script() -> PathBuf {
    repo().join("scripts/sshd-lab.sh")
}

/// sshd is installed (scripts/test installs it; tests never do); `false`, after saying so, when
/// it is not.
fn sshd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let o = Command::new("bash")
            .arg(script())
            .arg("find")
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        if !o.status.success() {
            sfbpatch_testkit::missing(String::from_utf8_lossy(&o.stderr).trim());
        }
        o.status.success()
    })
}

/// The sshd instances of one test, stopped when dropped.
struct Hosts {
    dir: PathBuf,
    lab: PathBuf,
    keys: PathBuf,
    /// FQDN -> (port, host-key fingerprint).
    hosts: BTreeMap<String, (u16, String)>,
}

impl Hosts {
    /// Start one sshd per host for the lab `lab` of `s`, accepting the client key `id_ed25519`
    /// (made here). `None` when sshd cannot be had.
    fn start(s: &Scratch, lab: &str, hosts: &[&str]) -> Option<Hosts> {
        if !sshd_available() {
            return None;
        }
        let key = s.path().join("id_ed25519");
        if !key.exists() {
            keygen(&key);
        }
        let mut h = Hosts {
            dir: s.path().join("sshd"),
            lab: s.path().join(lab),
            keys: key.with_extension("pub"),
            hosts: BTreeMap::new(),
        };
        h.launch(hosts);
        Some(h)
    }

    fn launch(&mut self, hosts: &[&str]) {
        let o = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--lab")
            .arg(&self.lab)
            .arg("--bin")
            .arg(env!("CARGO_BIN_EXE_sfbpatch"))
            .arg("--authorized-keys")
            .arg(&self.keys)
            .arg("--owner")
            .arg(std::process::id().to_string())
            .args(hosts)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(
            o.status.success(),
            "sshd-lab.sh start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "sshd-lab.sh printed {line:?}");
            self.hosts
                .insert(f[0].to_string(), (f[2].parse().unwrap(), f[3].to_string()));
        }
    }

    fn signal(&self, what: &str, host: &str) {
        let o = Command::new("bash")
            .arg(script())
            .arg(what)
            .arg("--dir")
            .arg(&self.dir)
            .arg(host)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// The host drops off the network: its sshd, its sessions and what they run, killed.
    fn kill(&self, host: &str) {
        self.signal("kill", host);
    }

    /// Start it again: same port, same host key.
    fn restart(&mut self, host: &str) {
        self.launch(&[host]);
    }

    /// Start it again with a new host key.
    fn rekey(&mut self, host: &str) {
        self.signal("stop", host);
        std::fs::remove_file(self.dir.join(host).join("ssh_host_ed25519_key")).unwrap();
        self.launch(&[host]);
    }

    fn port(&self, host: &str) -> u16 {
        self.hosts[host].0
    }

    fn fingerprint(&self, host: &str) -> &str {
        &self.hosts[host].1
    }

    /// A connections file for these hosts; `extra` adds lines to a host's table.
    fn connections(&self, identity: &str, extra: &[(&str, &str)]) -> String {
        let user = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
        let mut text = format!(
            "# sshd-lab.sh: one OpenSSH server per lab server\n[defaults]\nuser = \"{user}\"\nidentity_file = \"{identity}\"\n"
        );
        for (fqdn, (port, _)) in &self.hosts {
            text.push_str(&format!(
                "\n[[server]]\nfqdn = \"{fqdn}\"\nhost = \"127.0.0.1\"\nport = {port}\n"
            ));
            for (h, line) in extra {
                if h == fqdn {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
    }
}

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sfbpatch-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn apply_ssh(s: &Scratch, only: &[&str], extra: &[&str]) -> Output {
    s.run(&apply_ssh_args(only, extra))
}

fn apply_ssh_args<'a>(only: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    common::apply_args(
        &["--target", "ssh", "--connections", "conn.toml"],
        only,
        extra,
    )
}

fn lab_init(s: &Scratch, lab: &str, extra: &[&str]) {
    s.lab_init(lab, extra);
}

fn server<'a>(lab: &'a Value, fqdn: &str) -> &'a Value {
    item(lab, "servers", "fqdn", fqdn)
}

fn assert_untouched(lab: &Value, fqdn: &str) {
    let s = server(lab, fqdn);
    assert_eq!(s["installer_runs"], 0, "{fqdn}: {s}");
    assert_ne!(s["installed_build"], NEW, "{fqdn}");
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn apply_over_ssh_reaches_the_same_world_as_the_in_process_target() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    lab_init(&s, "lab-local", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &ALL) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));

    let o = apply_ssh(&s, &[], &["--accept-new-host-keys"]);
    assert_eq!(code(&o), 0, "{}\n{}", stderr(&o), stdout(&o));
    assert!(stdout(&o).contains("run 1 succeeded"), "{}", stdout(&o));
    // Real servers have no lab to read availability from: the summary says where its figures
    // come from instead of claiming the lab's.
    assert!(
        stdout(&o).contains(
            "Back-end figures come from the journal (the step windows sfbpatch recorded); whether \
             a pool fell below quorum or dropped sessions is not measured on real servers."
        ),
        "{}",
        stdout(&o)
    );

    let local = s.run(&[
        "apply",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab-local",
        "--state",
        "local.db",
        "--yes",
    ]);
    assert_eq!(code(&local), 0, "{}", stderr(&local));

    let over_ssh = s.lab_json("lab");
    let in_process = s.lab_json("lab-local");
    for fqdn in ALL {
        assert_patched(&over_ssh, fqdn);
    }
    // The same servers, services, builds and databases, field for field (when each was out of
    // service depends on the controller's clock and order of calls).
    assert_eq!(common::machines(&over_ssh), common::machines(&in_process));
    assert_eq!(over_ssh["sql_instances"], in_process["sql_instances"]);
    for inst in over_ssh["sql_instances"].as_array().unwrap() {
        for st in inst["stores"].as_array().unwrap() {
            assert_eq!(st["version"], st["expected_version"], "{st}");
        }
    }
    // Every pool is back to normal. (Outage intervals are not compared: over SSH the engine
    // runs servers on threads in real time, and a lab at speed 0 adds up the simulated time of
    // operations that overlapped; the in-process run is a simulation in virtual time.)
    for (a, b) in over_ssh["pools"]
        .as_array()
        .unwrap()
        .iter()
        .zip(in_process["pools"].as_array().unwrap())
    {
        assert_eq!(a["fqdn"], b["fqdn"]);
        assert_eq!(a["mode"], "normal", "{a}");
    }

    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "succeeded");
    for sv in status["servers"].as_array().unwrap() {
        assert_eq!(sv["state"], "succeeded", "{sv}");
    }

    // The keys were pinned in the state store: without the flag, the next check passes.
    let again = apply_ssh(&s, &[], &["--dry-run"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn an_unknown_host_key_is_refused_without_the_flag() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    let o = apply_ssh(&s, &[SE1], &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(
        err.contains(&format!("the host key of server {SE1}"))
            && err.contains("is not known")
            && err.contains(hosts.fingerprint(SE1))
            && err.contains("--accept-new-host-keys"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_untouched(&s.lab_json("lab"), SE1);
    // No run was recorded.
    let status = s.run(&["status", "--state", "state.db"]);
    assert_ne!(code(&status), 0, "{}", stdout(&status));
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn a_changed_host_key_is_refused_naming_the_server_and_both_fingerprints() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(mut hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    // A dry run checks the connection and pins the key.
    let o = apply_ssh(&s, &[SE1], &["--dry-run", "--accept-new-host-keys"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let old = hosts.fingerprint(SE1).to_string();

    hosts.rekey(SE1);
    let new = hosts.fingerprint(SE1).to_string();
    assert_ne!(old, new);
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    // Pinned in the state store: refused, even with the flag.
    let o = apply_ssh(&s, &[SE1], &["--accept-new-host-keys"]);
    let err = stderr(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(
        err.contains(&format!("the host key of server {SE1}"))
            && err.contains("has changed")
            && err.contains(&format!("expected {old}"))
            && err.contains(&format!("presented {new}")),
        "{err}"
    );
    assert_untouched(&s.lab_json("lab"), SE1);

    // Configured in the connections file: the same, with a fresh state store.
    s.write(
        "conn.toml",
        &hosts.connections("id_ed25519", &[(SE1, &format!("host_key = \"{old}\""))]),
    );
    let args: Vec<&str> = apply_ssh_args(&[SE1], &[])
        .into_iter()
        .map(|a| if a == "state.db" { "fresh.db" } else { a })
        .collect();
    let o = s.run(&args);
    let err = stderr(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(
        err.contains(&format!("expected {old} (from the connections file"))
            && err.contains(&format!("presented {new}")),
        "{err}"
    );
    // With the new key configured, the run goes ahead.
    s.write(
        "conn.toml",
        &hosts.connections("id_ed25519", &[(SE1, &format!("host_key = \"{new}\""))]),
    );
    let o = apply_ssh(&s, &[SE1], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_patched(&s.lab_json("lab"), SE1);
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn a_wrong_client_key_is_an_authentication_error_naming_the_server() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    keygen(&s.path().join("other_ed25519"));
    s.write("conn.toml", &hosts.connections("other_ed25519", &[]));
    let o = apply_ssh(&s, &[SE1], &["--accept-new-host-keys"]);
    let err = stderr(&o);
    assert_eq!(code(&o), 5, "{err}");
    assert!(
        err.contains(&format!("authentication failed on server {SE1}"))
            && err.contains(&format!("127.0.0.1:{}", hosts.port(SE1)))
            && err.contains("other_ed25519"),
        "{err}"
    );
    assert!(
        !err.contains("PRIVATE KEY"),
        "no key material in errors: {err}"
    );
    assert_untouched(&s.lab_json("lab"), SE1);
}

#[test]
fn bad_connection_input_is_refused_before_anything_runs() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    // A key that others can read.
    let key = s.path().join("open_ed25519");
    keygen(&key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        s.write(
            "conn.toml",
            &format!(
                "[defaults]\nuser = \"root\"\nidentity_file = \"open_ed25519\"\n[[server]]\nfqdn = \"{SE1}\"\nhost = \"127.0.0.1\"\nport = 1\n"
            ),
        );
        let o = apply_ssh(&s, &[SE1], &[]);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{err}");
        assert!(
            err.contains("open_ed25519") && err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
        let text = std::fs::read_to_string(&key).unwrap();
        let body = text.lines().nth(1).unwrap();
        assert!(!err.contains(body), "no key material in errors: {err}");
    }
    // A connections file with a mistake: file, line and server.
    s.write(
        "conn.toml",
        &format!(
            "[defaults]\nuser = \"root\"\n\n[[server]]\nfqdn = \"{SE1}\"\nhost = \"127.0.0.1\"\nport = 70000\n"
        ),
    );
    let o = apply_ssh(&s, &[SE1], &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains(&format!(
            "conn.toml:7: server {SE1}: 'port' must be an integer"
        )),
        "{err}"
    );
    // No user anywhere.
    s.write(
        "conn.toml",
        &format!("[[server]]\nfqdn = \"{SE1}\"\nidentity_file = \"x\"\n"),
    );
    let o = apply_ssh(&s, &[SE1], &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no user to connect as"),
        "{}",
        stderr(&o)
    );
    // --lab with --target ssh, and --connections with the lab.
    let o = s.run(&[
        "apply",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--target",
        "ssh",
        "--lab",
        "lab",
        "--yes",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = s.run(&[
        "apply",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--connections",
        "conn.toml",
        "--yes",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_untouched(&s.lab_json("lab"), SE1);
}

fn step_state(status: &Value, fqdn: &str, step: &str) -> Option<String> {
    let sv = status["servers"]
        .as_array()?
        .iter()
        .find(|s| s["fqdn"] == fqdn)?;
    let st = sv["steps"].as_array()?.iter().find(|s| s["id"] == step)?;
    st["state"].as_str().map(str::to_string)
}

/// Poll `status` until `want` holds or `limit` passes.
fn wait_for(s: &Scratch, limit: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let o = s.run(&["status", "--state", "state.db", "--format", "json"]);
        if code(&o) == 0
            && let Ok(v) = serde_json::from_slice::<Value>(&o.stdout)
            && want(&v)
        {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn sshd_killed_during_install_update_then_resume_runs_the_installer_once() {
    let s = Scratch::new();
    // install-update takes 100 simulated minutes = 10 s at speed 600; the rest is quick.
    s.write(
        "faults.toml",
        &format!(
            "[[fault]]\nserver = \"{SE1}\"\nstep = \"install-update\"\nduration_minutes = 100\n"
        ),
    );
    lab_init(&s, "lab", &["--speed", "600", "--faults", "faults.toml"]);
    let Some(mut hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));

    let mut apply = crate::common::bin()
        .current_dir(s.path())
        .args(apply_ssh_args(&[SE1], &["--accept-new-host-keys"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apply starts");
    wait_for(
        &s,
        Duration::from_secs(60),
        "install-update to start",
        |v| step_state(v, SE1, "install-update").as_deref() == Some("running"),
    );
    // Inside the installer's 10 seconds: the host drops off the network mid-step.
    std::thread::sleep(Duration::from_millis(1500));
    hosts.kill(SE1);
    // The engine records the step's outcome as unknown (the connection was lost).
    wait_for(&s, Duration::from_secs(30), "the step to be unknown", |v| {
        step_state(v, SE1, "install-update").as_deref() == Some("unknown")
    });
    // The operator gives up on this process (it would wait and probe again).
    apply.kill().expect("apply is killed");
    let _ = apply.wait();
    let lab = s.lab_json("lab");
    assert_eq!(server(&lab, SE1)["installer_runs"], 0, "killed mid-install");

    hosts.restart(SE1);
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}\n{}", stderr(&o), stdout(&o));
    let lab = s.lab_json("lab");
    assert_patched(&lab, SE1);
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "succeeded");
    assert_eq!(
        step_state(&status, SE1, "install-update").as_deref(),
        Some("succeeded")
    );
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn an_installer_that_asks_for_a_restart_gets_one_over_ssh() {
    let s = Scratch::new();
    s.write(
        "faults.toml",
        &format!("[[fault]]\nserver = \"{SE1}\"\nstep = \"install-update\"\nexit_code = 3010\n"),
    );
    lab_init(&s, "lab", &["--faults", "faults.toml"]);
    let Some(hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    let o = apply_ssh(&s, &[SE1], &["--accept-new-host-keys", "--format", "jsonl"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("\"rebooted\""), "{}", stdout(&o));
    assert_patched(&s.lab_json("lab"), SE1);
}

/// Base64 of the UTF-16LE text, as `powershell.exe -EncodedCommand` takes it.
fn encoded_command(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("powershell.exe -NoProfile -NonInteractive -EncodedCommand {out}")
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn an_unknown_script_sent_through_sshd_is_refused() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    let port = hosts.port(SE1).to_string();
    let ssh = |command: &str| {
        Command::new("ssh")
            .args([
                "-i",
                "id_ed25519",
                "-p",
                &port,
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "127.0.0.1",
            ])
            .arg(command)
            .current_dir(s.path())
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    };
    for command in [
        encoded_command("Remove-Item -Recurse C:\\\n"),
        encoded_command(
            "# sfbpatch-template: step/format-disk v1\n& { Format-Volume -DriveLetter C }\n",
        ),
        encoded_command(
            "& {\n# sfbpatch-template: step/stop-w3svc v1\nparam([string] $Server)\nStop-Computer\n} -Server 'se1.dublin.demo.example'\n",
        ),
        "rm -rf /".to_string(),
        String::new(),
    ] {
        let o = ssh(&command);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{command}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&o.stderr).trim().is_empty(),
            "a refusal says why"
        );
    }
    let lab = s.lab_json("lab");
    assert_untouched(&lab, SE1);
    assert_eq!(server(&lab, SE1)["w3svc"], "running");
}

/// The demo package with `installer` instead of its installer line.
fn package_with(s: &Scratch, name: &str, installer: &str) {
    let demo = std::fs::read_to_string(s.path().join("demo-package.toml")).unwrap();
    let text: String = demo
        .lines()
        .map(|l| {
            if l.starts_with("installer = ") {
                installer.to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    s.write(name, &text);
}

fn apply_package(s: &Scratch, package: &str, state: &str, only: &str) -> Output {
    s.run(&[
        "apply",
        "demo-topology.xml",
        "--package",
        package,
        "--target",
        "ssh",
        "--connections",
        "conn.toml",
        "--state",
        state,
        "--yes",
        "--only",
        only,
        "--accept-new-host-keys",
    ])
}

/// A file on the controller is uploaded over SFTP into the staging folder; a UNC path is used
/// as the server sees it, never joined to the manifest's folder; an https URL is the server's
/// to download. Each through real sshd into `lab shell`.
#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn each_kind_of_installer_source_reaches_the_server_over_ssh() {
    const FE11: &str = "fe11.berlin.demo.example";
    const STAGED: &str =
        "C/ProgramData/sfbpatch/staging/7.0.2046.553/SkypeServerUpdateInstaller.exe";
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &[SE1, "se2.dublin.demo.example", FE11]) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    let installer = std::fs::read(s.path().join("SkypeServerUpdateInstaller.exe")).unwrap();
    let files = s.path().join("lab").join(sfbpatch_lab::FILES_DIR);

    // A file on the controller: sent over the server's SSH connection.
    let o = apply_package(&s, "demo-package.toml", "file.db", SE1);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read(files.join(SE1).join(STAGED)).unwrap(),
        installer,
        "the upload put the installer into the staging folder"
    );
    assert_patched(&s.lab_json("lab"), SE1);

    // A UNC path: the server reads the share; nothing is uploaded.
    let share = files.join("unc/files.demo.example/updates");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("SkypeServerUpdateInstaller.exe"), &installer).unwrap();
    package_with(
        &s,
        "share.toml",
        r"installer = '\\files.demo.example\updates\SkypeServerUpdateInstaller.exe'",
    );
    let se2 = "se2.dublin.demo.example";
    let o = apply_package(&s, "share.toml", "share.db", se2);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        !files.join(se2).join(STAGED).exists(),
        "a server path is not uploaded"
    );
    assert_patched(&s.lab_json("lab"), se2);

    // An https URL reaches the server as written; the lab cannot download and says so.
    package_with(
        &s,
        "url.toml",
        "installer = \"https://download.example.com/cu/SkypeServerUpdateInstaller.exe\"",
    );
    let o = apply_package(&s, "url.toml", "url.db", FE11);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let status = s.status_json("url.db");
    let reason = item(&status, "servers", "fqdn", FE11)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("the lab cannot download")
            && reason.contains("https://download.example.com/cu/SkypeServerUpdateInstaller.exe"),
        "{reason}"
    );
    assert!(!files.join(FE11).exists(), "nothing was uploaded");
    assert_untouched(&s.lab_json("lab"), FE11);
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn probe_over_ssh_reads_the_same_facts_as_the_lab() {
    const POOL: [&str; 4] = [
        "fe11.berlin.demo.example",
        "fe12.berlin.demo.example",
        "fe13.berlin.demo.example",
        "sqlbe1.berlin.demo.example",
    ];
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &POOL) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    let before = s.lab_json("lab");
    let probe = |target: &[&str]| {
        let mut args = vec![
            "probe",
            "demo-topology.xml",
            "--package",
            "demo-package.toml",
            "--state",
            "state.db",
            "--only",
            "fepool1.berlin.demo.example",
            "--format",
            "json",
        ];
        args.extend(target);
        let o = s.run(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).expect("probe json")
    };
    let over_ssh = probe(&[
        "--target",
        "ssh",
        "--connections",
        "conn.toml",
        "--accept-new-host-keys",
    ]);
    let in_process = probe(&["--lab", "lab"]);
    assert_eq!(over_ssh, in_process);
    assert_eq!(over_ssh["machines"].as_array().unwrap().len(), 4);
    assert_eq!(s.lab_json("lab"), before, "the probe changed nothing");
}

/// Stores on a SQL Server of their own (fabrikam: Monitoring on sqlmon), over sshd: every
/// database of the deployment ends current, and no SQL-only machine got a Skype for Business
/// command it could not run.
#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn every_store_ends_current_over_ssh() {
    let s = Scratch::new();
    // The fixture's own connection keys for fe01 name a made-up host key; here sshd-lab's
    // connections file says how to reach every machine.
    let inventory = std::fs::read_to_string(common::fixture("fabrikam.toml")).unwrap();
    let inventory: String = inventory
        .lines()
        .map(|line| match line.find(", host = ") {
            Some(i) if line.contains("fe01.fabrikam.com") => format!("{} }},", &line[..i]),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!inventory.contains("host_key"), "{inventory}");
    s.write("fabrikam.toml", &inventory);
    let o = s.run(&["lab", "init", "lab", "--topology", "fabrikam.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let plan = s.run(&[
        "plan",
        "fabrikam.toml",
        "--package",
        "demo-package.toml",
        "--format",
        "json",
    ]);
    let plan: Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let machines: Vec<String> = plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sv| sv["fqdn"].as_str().unwrap().to_string())
        .collect();
    assert!(
        machines.iter().any(|m| m == "sqlmon.fabrikam.com"),
        "{machines:?}"
    );
    let names: Vec<&str> = machines.iter().map(String::as_str).collect();
    let Some(hosts) = Hosts::start(&s, "lab", &names) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    let o = s.run(&[
        "apply",
        "fabrikam.toml",
        "--package",
        "demo-package.toml",
        "--target",
        "ssh",
        "--connections",
        "conn.toml",
        "--accept-new-host-keys",
        "--state",
        "state.db",
        "--yes",
        "--max-parallel",
        "3",
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", stderr(&o), stdout(&o));
    let lab = s.lab_json("lab");
    for inst in lab["sql_instances"].as_array().unwrap() {
        for db in inst["stores"].as_array().unwrap() {
            assert_eq!(db["version"], db["expected_version"], "{inst}");
            assert!(db["version"].as_str().unwrap().ends_with(".553"), "{inst}");
        }
    }
    for fqdn in &names {
        assert_patched(&lab, fqdn);
    }
    let mon = server(&lab, "sqlmon.fabrikam.com");
    assert_eq!(mon["kind"], "store", "{mon}");
    assert_eq!(mon["installer_runs"], 0, "{mon}");
    assert_eq!(s.status_json("state.db")["run"]["state"], "succeeded");
}

/// Over SSH no lab tells sfbpatch the installed build before the run: the pre-flight reads it,
/// and a machine of another product line (or on a newer build) is refused before any outage.
#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn the_pre_flight_refuses_another_product_line_or_a_downgrade_over_ssh() {
    for (build, says) in [
        (
            "6.0.9319.0",
            "pre-flight: se1.dublin.demo.example runs Skype for Business Server 2015 (build \
             6.0.9319.0); the package Skype for Business Server 2019 CU8 HF1 \
             (lab) is for Skype for Business Server 2019 (7.0.2046.*), and an update is never \
             applied to another product line; nothing was changed",
        ),
        (
            "7.0.2046.600",
            "pre-flight: se1.dublin.demo.example runs build 7.0.2046.600, newer than the \
             package's 7.0.2046.553; sfbpatch does not downgrade; nothing was changed",
        ),
    ] {
        let s = Scratch::new();
        lab_init(&s, "lab", &["--build", build]);
        let Some(hosts) = Hosts::start(&s, "lab", &[SE1]) else {
            return;
        };
        s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
        let before = s.lab_json("lab");
        let o = apply_ssh(&s, &[SE1], &["--accept-new-host-keys"]);
        assert_eq!(code(&o), 1, "{build}: {}", stderr(&o));
        let status = s.status_json("state.db");
        let se1 = item(&status, "servers", "fqdn", SE1);
        assert_eq!(se1["state"], "failed", "{build}");
        assert_eq!(se1["reason"], says, "{build}");
        assert_eq!(
            server(&s.lab_json("lab"), SE1),
            server(&before, SE1),
            "{build}: nothing changed"
        );
    }
}

/// A run taken over on another controller host: the connections file and the identity it names
/// live elsewhere there; `resume --connections` finds them anew and finishes the run.
#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn resume_on_another_controller_host_finds_its_connections_anew() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    // The first controller dies inside the procedure (its 8th journal append).
    let o = crate::common::bin()
        .current_dir(s.path())
        .args(apply_ssh_args(&[SE1], &["--accept-new-host-keys"]))
        .env(common::KILL_ENV, "8")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stderr(&o));
    // On the other host, the files are in another folder.
    std::fs::create_dir(s.path().join("other")).unwrap();
    for f in ["conn.toml", "id_ed25519"] {
        std::fs::rename(s.path().join(f), s.path().join("other").join(f)).unwrap();
    }
    let r = s.run(&["resume", "--state", "state.db"]);
    assert_ne!(code(&r), 0);
    assert!(stderr(&r).contains("conn.toml"), "{}", stderr(&r));
    let r = s.run(&[
        "resume",
        "--state",
        "state.db",
        "--connections",
        "other/conn.toml",
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_patched(&s.lab_json("lab"), SE1);
}

/// The lock a lab server keeps for the controller patching it (a registry key on Windows), read
/// without changing anything.
fn lock_of(s: &Scratch, lab: &str, fqdn: &str) -> Option<sfbpatch_engine::ServerLock> {
    sfbpatch_lab::Lab::open(&s.path().join(lab))
        .unwrap()
        .target()
        .lock_holder(fqdn)
        .unwrap()
}

/// `apply --only SE1` over SSH with its own state file.
fn apply_ssh_with_state(s: &Scratch, state: &str, kill_at: Option<&str>) -> Output {
    let args: Vec<&str> = apply_ssh_args(&[SE1], &["--accept-new-host-keys"])
        .into_iter()
        .map(|a| if a == "state.db" { state } else { a })
        .collect();
    let mut cmd = crate::common::bin();
    cmd.current_dir(s.path()).args(args).stdin(Stdio::null());
    if let Some(n) = kill_at {
        cmd.env(common::KILL_ENV, n);
    }
    cmd.output().expect("sfbpatch runs")
}

/// Two operators with two state files cannot patch the same server over SSH: the lock the
/// server keeps (`server/lock` through sshd into `lab shell`) refuses the second controller in
/// its pre-flight, naming the first, and the second changes nothing on the server. A run that
/// ends releases the lock (`server/unlock`); then the other may go ahead.
#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn two_state_files_cannot_patch_the_same_server_over_ssh() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let Some(hosts) = Hosts::start(&s, "lab", &[SE1]) else {
        return;
    };
    s.write("conn.toml", &hosts.connections("id_ed25519", &[]));
    assert_eq!(lock_of(&s, "lab", SE1), None);

    // The first operator's controller dies inside the server's procedure (its 8th journal
    // append): the server keeps its lock.
    let o = apply_ssh_with_state(&s, "a.db", Some("8"));
    assert!(!o.status.success(), "{}", stderr(&o));
    let held = lock_of(&s, "lab", SE1).expect("the first controller's lock is on the server");
    assert!(
        held.holder.starts_with("sqlite:a.db~") && held.holder.ends_with("#run1"),
        "{held:?}"
    );
    let before = s.lab_json("lab");

    // The second operator, with a state file of their own, is refused before anything runs.
    let o = apply_ssh_with_state(&s, "b.db", None);
    assert_eq!(code(&o), 1, "{}\n{}", stderr(&o), stdout(&o));
    let status = s.status_json("b.db");
    let se1 = item(&status, "servers", "fqdn", SE1);
    assert_eq!(se1["state"], "failed", "{se1}");
    let reason = se1["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "server {SE1} is locked by another controller ({})",
            held.holder
        )),
        "{reason}"
    );
    assert!(!reason.contains("b.db~"), "{reason}");
    assert_eq!(
        server(&s.lab_json("lab"), SE1),
        server(&before, SE1),
        "the second controller changed nothing on the server"
    );
    assert_eq!(
        lock_of(&s, "lab", SE1),
        Some(held.clone()),
        "the lock stays"
    );

    // The first operator finishes the run: the server is patched and holds no lock.
    let o = s.run(&["resume", "--state", "a.db"]);
    assert_eq!(code(&o), 0, "{}\n{}", stderr(&o), stdout(&o));
    assert_patched(&s.lab_json("lab"), SE1);
    assert_eq!(s.status_json("a.db")["run"]["state"], "succeeded");
    assert_eq!(lock_of(&s, "lab", SE1), None, "the run released its lock");

    // Now the second operator may go ahead; its run, too, leaves no lock behind.
    let o = apply_ssh_with_state(&s, "b.db", None);
    assert_eq!(code(&o), 0, "{}\n{}", stderr(&o), stdout(&o));
    assert_eq!(s.status_json("b.db")["run"]["state"], "succeeded");
    assert_patched(&s.lab_json("lab"), SE1);
    assert_eq!(lock_of(&s, "lab", SE1), None, "the run released its lock");
}

/// `server/lock` and `server/unlock` as `lab shell` carries them out: the result lines the
/// PowerShell templates write, and the lab's lock.
#[test]
fn lab_shell_keeps_the_server_lock_as_the_templates_do() {
    let s = Scratch::new();
    lab_init(&s, "lab", &[]);
    let fqdn = sfbpatch_topology::Fqdn::parse(SE1).unwrap();
    let shell = |script: sfbpatch_remote::Script| -> Value {
        let o = crate::common::bin()
            .current_dir(s.path())
            .args(["lab", "shell", "--lab", "lab", "--host", SE1])
            .env("SSH_ORIGINAL_COMMAND", script.command_line())
            .output()
            .expect("sfbpatch runs");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let result = script.parse_result(&stdout(&o)).expect("a result line");
        assert_eq!(result.exit_code, 0, "{}", result.output);
        result.facts
    };
    let lock = |holder: &str, generation: u64, now: u64, until: u64| {
        shell(sfbpatch_remote::lock_script(&fqdn, holder, generation, now, until).unwrap())
    };
    let unlock = |holder: &str| shell(sfbpatch_remote::unlock_script(&fqdn, holder).unwrap());
    let (a, b) = ("sqlite:/srv/a.db#run1", "sqlite:/srv/b.db#run1");

    assert_eq!(
        lock(a, 1, 1_000, 5_000),
        serde_json::json!({ "taken": true })
    );
    let held = |holder: &str, generation: u64, expires_at: u64| {
        Some(sfbpatch_engine::ServerLock {
            holder: holder.to_string(),
            generation,
            expires_at,
        })
    };
    assert_eq!(lock_of(&s, "lab", SE1), held(a, 1, 5_000));
    // Another holder, before the lock expires: nothing taken, the holder named.
    assert_eq!(
        lock(b, 1, 4_999, 9_000),
        serde_json::json!({
            "taken": false,
            "holder": a,
            "generation": 1,
            "expires_at": 5_000,
        })
    );
    // The same holder with an older generation: fenced.
    assert_eq!(
        lock(a, 2, 2_000, 6_000),
        serde_json::json!({ "taken": true })
    );
    assert_eq!(
        lock(a, 1, 2_000, 7_000),
        serde_json::json!({
            "taken": false,
            "fenced": true,
            "holder": a,
            "generation": 2,
            "expires_at": 6_000,
        })
    );
    assert_eq!(lock_of(&s, "lab", SE1), held(a, 2, 6_000));
    // Only its holder removes the lock.
    assert_eq!(unlock(b), serde_json::json!({ "removed": false }));
    assert_eq!(lock_of(&s, "lab", SE1), held(a, 2, 6_000));
    // Once it has expired, another holder takes it.
    assert_eq!(
        lock(b, 1, 6_000, 9_000),
        serde_json::json!({ "taken": true })
    );
    assert_eq!(lock_of(&s, "lab", SE1), held(b, 1, 9_000));
    assert_eq!(unlock(a), serde_json::json!({ "removed": false }));
    assert_eq!(unlock(b), serde_json::json!({ "removed": true }));
    assert_eq!(lock_of(&s, "lab", SE1), None);
    assert_eq!(unlock(b), serde_json::json!({ "removed": false }));
}

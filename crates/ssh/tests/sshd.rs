//! The SSH target against real OpenSSH servers on 127.0.0.1 (scripts/sshd-lab.sh), each with a
//! ForceCommand into a small fake host: a shell script that reads the template's marker from
//! the encoded command, logs it, behaves as the test says (answer, sleep, flood stdout, drop
//! the connection, refuse) and prints a result line. What the lab does with a script is tested
//! in the CLI's tests; these test the connection: host keys, keys, the agent, the pool,
//! timeouts, lost connections, output caps.
//!
//! These tests need sshd (scripts/test installs it; tests never install anything) and are
//! ignored by a plain `cargo test`; see `sfbpatch_testkit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sfbpatch_engine::{ProbeVerdict, StepRequest, Target, TargetError};
use sfbpatch_plan::{Installer, Package, Plan, PlanPolicy, StepId};
use sfbpatch_ssh::config::{Endpoint, Identity};
use sfbpatch_ssh::{Fingerprint, HostKeys, MemoryHostKeys, SshOptions, SshTarget};

const SERVERS: [&str; 4] = [
    "se1.example.com",
    "se2.example.com",
    "se3.example.com",
    "se4.example.com",
];

const FAKE_HOST: &str = r#"#!/usr/bin/env bash
# A fake Windows host: `FAKE lab shell --lab DIR --host FQDN`, run by sshd's ForceCommand.
dir=$4
host=$6
b64=${SSH_ORIGINAL_COMMAND##* }
template=$(printf '%s' "$b64" | base64 -d 2>/dev/null | iconv -f UTF-16LE -t UTF-8 2>/dev/null |
    sed -n 's/^# sfbpatch-template: \([^ ]*\) .*/\1/p' | head -n 1)
echo "$template" >>"$dir/$host.calls"
if [ "$(cat "$dir/$host.behaviour" 2>/dev/null)" = lab-restart ] && [ "$template" = server/reboot ]; then
    printf '{"template":"server/reboot","exit_code":0,"output":"Restarted","done":null,"facts":{"restart":"completed"}}\n'
    exit 0
fi
if [ "$(cat "$dir/$host.behaviour" 2>/dev/null)" = windows-restart ]; then
    # A Windows server: the restart is scheduled; probes see the old boot time twice, then
    # the new one.
    case "$template" in
        server/reboot)
            printf '{"template":"server/reboot","exit_code":0,"output":"Restart scheduled","done":null,"facts":{"restart":"scheduled","last_boot":"T1","delay_seconds":0}}\n'
            exit 0 ;;
        probe/*)
            n=$(( $(cat "$dir/$host.probes" 2>/dev/null || echo 0) + 1 ))
            echo "$n" >"$dir/$host.probes"
            boot=T1; [ "$n" -gt 2 ] && boot=T2
            printf '{"template":"%s","exit_code":0,"output":"","done":true,"facts":{"last_boot":"%s"}}\n' "$template" "$boot"
            exit 0 ;;
    esac
fi
if [ "$template" = server/stop ]; then
    # Stop the script whose command line ends with -CommandTail, as taskkill /T /F does.
    tail=$(printf '%s' "$b64" | base64 -d | iconv -f UTF-16LE -t UTF-8 |
        sed -n "s/.* -CommandTail '\([^']*\)'.*/\1/p")
    stopped=0
    if [ -f "$dir/$host.running" ]; then
        read -r pid running <"$dir/$host.running"
        case "$running" in
            *"$tail") kill -9 "$pid" 2>/dev/null && stopped=1; rm -f "$dir/$host.running" ;;
        esac
    fi
    printf '{"template":"server/stop","exit_code":0,"output":"Stopped %s","done":null,"facts":{"stopped":%s}}\n' "$stopped" "$stopped"
    exit 0
fi
case "$(cat "$dir/$host.behaviour" 2>/dev/null)" in
    sleep) sleep 6 ;;
    slow-effect)
        echo "$$ $b64" >"$dir/$host.running"
        sleep 4
        touch "$dir/$host.effect"
        rm -f "$dir/$host.running" ;;
    flood) head -c 3000000 /dev/zero | tr '\0' 'x'; echo ;;
    refuse) echo "unknown script" >&2; exit 2 ;;
    silent) exit 0 ;;
    drop) kill -9 "$PPID"; sleep 1 ;;
esac
printf 'banner line\n{"template":"%s","exit_code":0,"output":"ran on %s","done":true,"facts":{"host":"%s"}}\n' \
    "$template" "$host" "$host"
"#;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sshd-lab.sh")
}

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

/// Fake hosts behind real sshd instances, stopped when dropped.
struct Fake {
    dir: tempfile::TempDir,
    hosts: BTreeMap<String, (u16, String)>,
}

impl Fake {
    fn start(servers: &[&str]) -> Option<Fake> {
        if !sshd_available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-host");
        std::fs::write(&bin, FAKE_HOST).unwrap();
        chmod(&bin, 0o755);
        keygen(&dir.path().join("id_ed25519"));
        std::fs::create_dir(dir.path().join("world")).unwrap();
        let mut fake = Fake {
            dir,
            hosts: BTreeMap::new(),
        };
        fake.launch(servers);
        Some(fake)
    }

    fn launch(&mut self, servers: &[&str]) {
        let d = self.dir.path();
        let o = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg("--dir")
            .arg(d.join("sshd"))
            .arg("--lab")
            .arg(d.join("world"))
            .arg("--bin")
            .arg(d.join("fake-host"))
            .arg("--authorized-keys")
            .arg(d.join("id_ed25519.pub"))
            .arg("--owner")
            .arg(std::process::id().to_string())
            .args(servers)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            self.hosts
                .insert(f[0].to_string(), (f[2].parse().unwrap(), f[3].to_string()));
        }
    }

    fn behave(&self, server: &str, how: &str) {
        std::fs::write(
            self.dir
                .path()
                .join("world")
                .join(format!("{server}.behaviour")),
            how,
        )
        .unwrap();
    }

    fn calls(&self, server: &str) -> Vec<String> {
        std::fs::read_to_string(
            self.dir
                .path()
                .join("world")
                .join(format!("{server}.calls")),
        )
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
    }

    fn endpoints(&self, identity: Identity) -> Vec<Endpoint> {
        self.hosts
            .iter()
            .map(|(fqdn, (port, _))| Endpoint {
                server: fqdn.clone(),
                host: "127.0.0.1".into(),
                port: *port,
                user: whoami(),
                identity: identity.clone(),
                host_key: None,
            })
            .collect()
    }

    fn key(&self) -> Identity {
        Identity::File(self.dir.path().join("id_ed25519"))
    }

    fn target(&self, options: SshOptions) -> SshTarget {
        SshTarget::new(
            self.endpoints(self.key()),
            Box::new(MemoryHostKeys::default()),
            SshOptions {
                accept_new_host_keys: true,
                ..options
            },
        )
        .unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path().join("sshd"))
            .stdin(Stdio::null())
            .output();
    }
}

fn whoami() -> String {
    let o = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn plan() -> Plan {
    let mut topology = String::new();
    for s in SERVERS {
        topology.push_str(&format!(
            "[[pool]]\nfqdn = \"{s}\"\nsite = \"S\"\nedition = \"standard\"\n\n"
        ));
    }
    let deployment = sfbpatch_topology::load(&topology, "fake.toml").unwrap();
    let package = Package {
        name: "CU".into(),
        version: "7.0.2046.553".parse().unwrap(),
        installer: Installer::Path("/srv/SkypeServerUpdateInstaller.exe".into()),
        sha256: "c30d976f4b3e363089ddb18e014b0eabc3ca71ab51f5466f351427d8097aa4fd".into(),
        schema_versions: Default::default(),
        product: None,
    };
    sfbpatch_plan::plan(&deployment, &package, &PlanPolicy::default()).unwrap()
}

fn request<'a>(plan: &'a Plan, server: &str, step: StepId, timeout: u64) -> StepRequest<'a> {
    let sp = plan
        .servers
        .iter()
        .find(|s| s.fqdn.as_str() == server)
        .unwrap();
    StepRequest {
        run_id: 1,
        server: sp,
        step: sp.step(step),
        host: &sp.fqdn,
        package: &plan.package,
        operator: "test",
        attempt: 1,
        timeout,
        at: 0,
        fence: sfbpatch_engine::Fence {
            holder: "test",
            generation: 1,
        },
    }
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn steps_and_probes_run_over_ssh_and_new_host_keys_are_pinned() {
    let Some(fake) = Fake::start(&SERVERS[..2]) else {
        return;
    };
    let plan = plan();
    let pins = std::sync::Arc::new(std::sync::Mutex::new(MemoryHostKeys::default()));
    struct Shared(std::sync::Arc<std::sync::Mutex<MemoryHostKeys>>);
    impl HostKeys for Shared {
        fn pinned(&self, s: &str) -> Result<Option<String>, sfbpatch_engine::StoreError> {
            self.0.lock().unwrap().pinned(s)
        }
        fn pin(&mut self, s: &str, fp: &str) -> Result<(), sfbpatch_engine::StoreError> {
            self.0.lock().unwrap().pin(s, fp)
        }
    }
    let target = SshTarget::new(
        fake.endpoints(fake.key()),
        Box::new(Shared(pins.clone())),
        SshOptions {
            accept_new_host_keys: true,
            ..SshOptions::default()
        },
    )
    .unwrap();
    assert_eq!(target.kind(), "ssh");
    let out = target
        .execute(&request(&plan, SERVERS[0], StepId::StopW3svc, 30_000))
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.output, format!("ran on {}", SERVERS[0]));
    let probe = target
        .probe(&request(&plan, SERVERS[0], StepId::StopW3svc, 30_000))
        .unwrap();
    assert_eq!(probe.verdict, ProbeVerdict::Done);
    assert!(probe.facts.contains(SERVERS[0]), "{}", probe.facts);
    let out = target
        .recover(&request(&plan, SERVERS[1], StepId::InstallUpdate, 30_000))
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        fake.calls(SERVERS[0]),
        ["step/stop-w3svc", "probe/stop-w3svc"]
    );
    assert_eq!(fake.calls(SERVERS[1]), ["server/recover"]);
    // One connection per server, reused; both keys pinned as `ssh-keygen -l` shows them.
    assert_eq!(target.connections_opened(), 2);
    for s in &SERVERS[..2] {
        assert_eq!(
            pins.lock().unwrap().pinned(s).unwrap().as_deref(),
            Some(fake.hosts[*s].1.as_str())
        );
    }
    // The lab answers "restart completed": nothing to wait for.
    drop(target);
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn host_keys_unknown_changed_and_configured() {
    let Some(fake) = Fake::start(&SERVERS[..1]) else {
        return;
    };
    let plan = plan();
    let req = request(&plan, SERVERS[0], StepId::CheckAdminRole, 30_000);
    let real = fake.hosts[SERVERS[0]].1.clone();
    let other: Fingerprint = sfbpatch_ssh::hostkey::parse_expected(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImlR1jrLfWx8Hbyred2rXllfrD+sOnuMcqzyiEgUwoR",
    )
    .unwrap();

    // Unknown, not accepted.
    let t = SshTarget::new(
        fake.endpoints(fake.key()),
        Box::new(MemoryHostKeys::default()),
        SshOptions::default(),
    )
    .unwrap();
    let e = t.execute(&req).unwrap_err();
    let TargetError::Refused(msg) = &e else {
        panic!("{e:?}")
    };
    assert!(msg.contains("is not known") && msg.contains(&real), "{msg}");
    assert!(fake.calls(SERVERS[0]).is_empty(), "nothing ran");
    let check = t.check();
    assert!(check[0].1.is_err());

    // Pinned, and another key is presented: refused even when new keys are accepted.
    let mut pins = MemoryHostKeys::default();
    pins.pin(SERVERS[0], &other.to_string()).unwrap();
    let t = SshTarget::new(
        fake.endpoints(fake.key()),
        Box::new(pins),
        SshOptions {
            accept_new_host_keys: true,
            ..SshOptions::default()
        },
    )
    .unwrap();
    let msg = t.execute(&req).unwrap_err().to_string();
    assert!(
        msg.contains("has changed")
            && msg.contains(&format!("expected {other}"))
            && msg.contains(&format!("presented {real}"))
            && msg.contains(SERVERS[0]),
        "{msg}"
    );

    // Configured: the right one passes, a wrong one is refused.
    let mut eps = fake.endpoints(fake.key());
    eps[0].host_key = Some(real.parse().unwrap());
    let t = SshTarget::new(
        eps.clone(),
        Box::new(MemoryHostKeys::default()),
        SshOptions::default(),
    )
    .unwrap();
    assert_eq!(t.execute(&req).unwrap().exit_code, 0);
    eps[0].host_key = Some(other.clone());
    let t = SshTarget::new(
        eps,
        Box::new(MemoryHostKeys::default()),
        SshOptions::default(),
    )
    .unwrap();
    let msg = t.execute(&req).unwrap_err().to_string();
    assert!(msg.contains("connections file"), "{msg}");
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn a_key_the_server_does_not_accept_names_server_and_user() {
    let Some(fake) = Fake::start(&SERVERS[..1]) else {
        return;
    };
    let plan = plan();
    let wrong = fake.dir.path().join("wrong_ed25519");
    keygen(&wrong);
    let t = SshTarget::new(
        fake.endpoints(Identity::File(wrong.clone())),
        Box::new(MemoryHostKeys::default()),
        SshOptions {
            accept_new_host_keys: true,
            ..SshOptions::default()
        },
    )
    .unwrap();
    let msg = t
        .execute(&request(&plan, SERVERS[0], StepId::CheckAdminRole, 30_000))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("authentication failed on server {}", SERVERS[0]))
            && msg.contains(&format!("as user {}", whoami()))
            && msg.contains(&wrong.display().to_string()),
        "{msg}"
    );
    let key = std::fs::read_to_string(&wrong).unwrap();
    assert!(!msg.contains(key.lines().nth(1).unwrap()));
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn ssh_agent_keys_authenticate() {
    let Some(fake) = Fake::start(&SERVERS[..1]) else {
        return;
    };
    let plan = plan();
    let sock = fake.dir.path().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut agent) = agent else {
        sfbpatch_testkit::missing("ssh-agent is not installed (it comes with the OpenSSH client)");
        return;
    };
    let start = Instant::now();
    while !sock.exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(fake.dir.path().join("id_ed25519"))
        .env("SSH_AUTH_SOCK", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let t = SshTarget::new(
        fake.endpoints(Identity::Agent),
        Box::new(MemoryHostKeys::default()),
        SshOptions {
            accept_new_host_keys: true,
            agent: Some(sock.clone()),
            ..SshOptions::default()
        },
    )
    .unwrap();
    let out = t.execute(&request(&plan, SERVERS[0], StepId::CheckAdminRole, 30_000));
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.unwrap().exit_code, 0);
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn timeouts_lost_connections_floods_and_refusals() {
    let Some(fake) = Fake::start(&SERVERS[..1]) else {
        return;
    };
    let plan = plan();
    let s = SERVERS[0];
    let t = fake.target(SshOptions::default());

    fake.behave(s, "sleep");
    let started = Instant::now();
    let e = t
        .execute(&request(&plan, s, StepId::StopCsServices, 1_000))
        .unwrap_err();
    assert!(
        matches!(&e, TargetError::TimedOut { after_ms: 1000, .. }),
        "{e:?}"
    );
    assert!(e.outcome_unknown());
    assert!(started.elapsed() < Duration::from_secs(10));

    // What timed out is stopped on the host (sshd would leave it running): its effect never
    // lands.
    fake.behave(s, "slow-effect");
    let e = t
        .execute(&request(&plan, s, StepId::StopW3svc, 1_000))
        .unwrap_err();
    assert!(matches!(&e, TargetError::TimedOut { .. }), "{e:?}");
    assert_eq!(
        fake.calls(s).last().map(String::as_str),
        Some("server/stop"),
        "{:?}",
        fake.calls(s)
    );
    std::thread::sleep(Duration::from_secs(5));
    let world = fake.dir.path().join("world");
    assert!(
        !world.join(format!("{s}.effect")).exists(),
        "the step ran on"
    );
    assert!(!world.join(format!("{s}.running")).exists());

    // The connection dies mid-step: the outcome is unknown.
    fake.behave(s, "drop");
    let e = t
        .execute(&request(&plan, s, StepId::InstallUpdate, 30_000))
        .unwrap_err();
    assert!(
        matches!(&e, TargetError::Unreachable { reason, .. } if reason.contains("outcome is unknown")),
        "{e:?}"
    );
    // The next call connects again.
    fake.behave(s, "");
    let probe = t
        .probe(&request(&plan, s, StepId::InstallUpdate, 30_000))
        .unwrap();
    assert_eq!(probe.verdict, ProbeVerdict::Done);

    // 3 MB before the result line: the end is kept, the result read.
    fake.behave(s, "flood");
    let out = t
        .execute(&request(&plan, s, StepId::Verify, 30_000))
        .unwrap();
    assert_eq!(out.exit_code, 0);

    // The host refuses the script: nothing ran, nothing to retry.
    fake.behave(s, "refuse");
    let e = t
        .execute(&request(&plan, s, StepId::Verify, 30_000))
        .unwrap_err();
    assert!(
        matches!(&e, TargetError::Refused(m) if m.contains("unknown script")),
        "{e:?}"
    );

    // No result line at all: unknown, a probe decides.
    fake.behave(s, "silent");
    let e = t
        .execute(&request(&plan, s, StepId::Verify, 30_000))
        .unwrap_err();
    assert!(e.outcome_unknown(), "{e:?}");
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn a_restart_is_waited_for_until_the_server_booted_again() {
    let Some(fake) = Fake::start(&SERVERS[..1]) else {
        return;
    };
    let plan = plan();
    let s = SERVERS[0];
    let t = fake.target(SshOptions {
        reboot_poll: Duration::from_millis(50),
        ..SshOptions::default()
    });
    // A host that restarts at once (the lab) says so: nothing is waited for.
    fake.behave(s, "lab-restart");
    let out = t
        .reboot(&request(&plan, s, StepId::InstallUpdate, 30_000))
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(fake.calls(s), ["server/reboot"]);

    fake.behave(s, "windows-restart");
    let out = t
        .reboot(&request(&plan, s, StepId::InstallUpdate, 30_000))
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(out.output.contains("answered again"), "{}", out.output);
    assert_eq!(
        fake.calls(s),
        [
            "server/reboot",
            "server/reboot",
            "probe/install-update",
            "probe/install-update",
            "probe/install-update"
        ]
    );

    // A server that never comes back within the limit is unreachable.
    std::fs::write(
        fake.dir.path().join("world").join(format!("{s}.probes")),
        "-1000",
    )
    .unwrap();
    let t = fake.target(SshOptions {
        reboot_poll: Duration::from_millis(50),
        reboot_timeout: Duration::from_millis(500),
        ..SshOptions::default()
    });
    let e = t
        .reboot(&request(&plan, s, StepId::InstallUpdate, 30_000))
        .unwrap_err();
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e:?}");
}

#[test]
#[ignore = "needs sshd: scripts/test installs it and runs this"]
fn a_bounded_pool_serves_threads_for_many_servers() {
    let Some(fake) = Fake::start(&SERVERS) else {
        return;
    };
    let plan = plan();
    let t = fake.target(SshOptions {
        max_connections: 2,
        ..SshOptions::default()
    });
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    assert_send_sync(&t);
    // The check before a run: every server, through two connections.
    let started = Instant::now();
    let checked = t.check();
    assert_eq!(checked.len(), SERVERS.len());
    assert!(checked.iter().all(|(_, r)| r.is_ok()), "{checked:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(t.connections_open() <= 2);
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (t, plan) = (&t, &plan);
            scope.spawn(move || {
                for round in 0..3 {
                    let server = SERVERS[(i + round) % SERVERS.len()];
                    let out = t
                        .execute(&request(plan, server, StepId::CheckAdminRole, 30_000))
                        .unwrap();
                    assert_eq!(out.output, format!("ran on {server}"));
                    assert!(t.connections_open() <= 2);
                }
            });
        }
    });
    assert!(t.connections_open() <= 2);
    let calls: usize = SERVERS.iter().map(|s| fake.calls(s).len()).sum();
    assert_eq!(calls, 24);
}

#[test]
fn identity_files_that_others_can_read_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    keygen(&key);
    chmod(&key, 0o640);
    let ep = Endpoint {
        server: "se1.example.com".into(),
        host: "127.0.0.1".into(),
        port: 22,
        user: "u".into(),
        identity: Identity::File(key.clone()),
        host_key: None,
    };
    let e = SshTarget::new(
        vec![ep],
        Box::new(MemoryHostKeys::default()),
        SshOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("mode 0640") && e.contains("chmod 600"), "{e}");
}

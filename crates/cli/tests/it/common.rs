//! Running the binary and making its output comparable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfbpatch"));
    cmd.env("NO_COLOR", "1")
        .env_remove("SFBPATCH_STATE")
        .env_remove("SFBPATCH_TEST_KILL_AT_APPEND");
    cmd
}

/// Run `sfbpatch` with `args` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("sfbpatch runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project's own topology fixtures.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("crates/topology/tests/fixtures").join(name)
}

/// The demo assets (topology, package, stand-in installer).
pub fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

/// A public sample, or `None` after `sfbpatch_testkit::missing` when it is absent.
pub fn public_fixture(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SFBPATCH_PUBLIC_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/fixtures/public"));
    let path = dir.join(name);
    let found = path.exists().then_some(path.clone());
    sfbpatch_testkit::need(
        found,
        format_args!(
            "public fixture {} is absent (set SFBPATCH_PUBLIC_FIXTURES)",
            path.display()
        ),
    )
}

/// insta settings that hide what changes from machine to machine: temp paths, times.
pub fn redactions(dir: Option<&Path>) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    if let Some(dir) = dir {
        let shown = regex_escape(&dir.display().to_string());
        settings.add_filter(&shown, "[TMP]");
    }
    let canonical = std::fs::canonicalize(repo()).unwrap_or_else(|_| repo());
    settings.add_filter(&regex_escape(&canonical.display().to_string()), "[REPO]");
    settings.add_filter(&regex_escape(&repo().display().to_string()), "[REPO]");
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings.add_filter(r"until \d{10,}", "until [TIME]");
    settings
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A scratch directory with the demo package and stand-in installer copied in.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in [
            "demo-topology.xml",
            "demo-package.toml",
            "SkypeServerUpdateInstaller.exe",
        ] {
            std::fs::copy(asset(name), dir.path().join(name)).expect("copy asset");
        }
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_in(self.path(), args)
    }

    /// `lab show --format json` of the lab in `lab`.
    pub fn lab_json(&self, lab: &str) -> serde_json::Value {
        let o = self.run(&["lab", "show", lab, "--format", "json"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).expect("lab show json")
    }

    pub fn status_json(&self, state: &str) -> serde_json::Value {
        let o = self.run(&["status", "--state", state, "--format", "json"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).expect("status json")
    }
}

/// The crash hook's environment variable (see `crates/cli/src/crash.rs`).
pub const KILL_ENV: &str = "SFBPATCH_TEST_KILL_AT_APPEND";

/// Every machine of the demo topology, in plan order: three Enterprise pools (Front End
/// servers, then their SQL-only back end; the third on an AlwaysOn group) and two Standard
/// Edition servers.
pub const DEMO_SERVERS: [&str; 13] = [
    "fe11.berlin.demo.example",
    "fe12.berlin.demo.example",
    "fe13.berlin.demo.example",
    "sqlbe1.berlin.demo.example",
    "fe21.berlin.demo.example",
    "fe22.berlin.demo.example",
    "sqlbe2.berlin.demo.example",
    "fe31.dublin.demo.example",
    "fe32.dublin.demo.example",
    "sqlag-n1.dublin.demo.example",
    "sqlag-n2.dublin.demo.example",
    "se1.dublin.demo.example",
    "se2.dublin.demo.example",
];

/// The build the lab starts at, and the demo package's.
pub const OLD: &str = "7.0.2046.0";
pub const NEW: &str = "7.0.2046.553";

impl Scratch {
    /// `lab init LAB --topology demo-topology.xml EXTRA...`, which must succeed.
    pub fn lab_init(&self, lab: &str, extra: &[&str]) {
        let mut args = vec!["lab", "init", lab, "--topology", "demo-topology.xml"];
        args.extend(extra);
        let o = self.run(&args);
        assert_eq!(code(&o), 0, "lab init: {}", stderr(&o));
    }
}

/// `apply` of the demo topology and package with state in `state.db`, confirmed: `target`
/// names where (`--lab lab`, or `--target ssh --connections ...`), then `--only` each of
/// `only`, then `extra`.
pub fn apply_args<'a>(target: &[&'a str], only: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "apply",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
    ];
    args.extend(target);
    args.extend(["--state", "state.db", "--yes"]);
    for o in only {
        args.extend(["--only", o]);
    }
    args.extend(extra);
    args
}

/// `lab show`'s servers without when each was out of service: what two runs that order their
/// calls differently must agree on.
pub fn machines(lab: &serde_json::Value) -> serde_json::Value {
    let mut servers = lab["servers"].clone();
    for s in servers.as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("out_of_service");
    }
    servers
}

/// The element of the JSON array `v[list]` whose `key` is `value`.
pub fn item<'a>(
    v: &'a serde_json::Value,
    list: &str,
    key: &str,
    value: &str,
) -> &'a serde_json::Value {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no array {list:?} in {v}"))
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no {list} with {key} = {value}"))
}

/// In the lab world, by the machine's kind: a Standard Edition or Front End server is on the
/// new build, with the installer run once, every service running on new assemblies, W3SVC
/// running and (a Front End) back in its pool; a SQL Server machine (back end or store)
/// received no Skype for Business command it could not run, and the databases it holds are at
/// their expected version; with the Core Components it is on the new build too.
pub fn assert_patched(lab: &serde_json::Value, fqdn: &str) {
    let s = item(lab, "servers", "fqdn", fqdn);
    assert_eq!(s["reboot_pending"], false, "{fqdn}");
    assert_eq!(s["open_shells"], 0, "{fqdn}");
    assert_eq!(s["refused_commands"], 0, "{fqdn}: {s}");
    match s["kind"].as_str() {
        Some("back-end" | "store") => {
            assert_eq!(s["runs"]["sfb_services"], false, "{fqdn}: {s}");
            assert_eq!(s["w3svc"], "not-installed", "{fqdn}: {s}");
            assert_eq!(s["services"], serde_json::json!([]), "{fqdn}: {s}");
            if s["runs"]["management_shell"] == true {
                assert_eq!(s["installed_build"], NEW, "{fqdn}: {s}");
                assert_eq!(
                    s["installer_runs"], 1,
                    "{fqdn}: installer must run exactly once"
                );
            } else {
                assert_eq!(s["installer_runs"], 0, "{fqdn}: {s}");
            }
            for instance in lab["sql_instances"].as_array().unwrap() {
                if instance["sql_server_fqdn"] != fqdn {
                    continue;
                }
                for db in instance["stores"].as_array().unwrap() {
                    assert_eq!(db["version"], db["expected_version"], "{fqdn}: {db}");
                }
            }
        }
        _ => {
            assert_eq!(s["installed_build"], NEW, "{fqdn}: {s}");
            assert_eq!(
                s["installer_runs"], 1,
                "{fqdn}: installer must run exactly once"
            );
            assert_eq!(s["failed_over"], false, "{fqdn}: {s}");
            assert_eq!(s["w3svc"], "running", "{fqdn}");
            for svc in s["services"].as_array().unwrap() {
                assert_eq!(svc["state"], "running", "{fqdn} {svc}");
                assert_eq!(svc["loaded_build"], NEW, "{fqdn} {svc}");
            }
        }
    }
}

/// The lower-case hex SHA-256 of a file, by `sha256sum` (another way than sfbpatch computes it).
pub fn sha256sum(path: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    String::from_utf8(o.stdout).expect("UTF-8")[..64].to_string()
}

//! Every store of the deployment ends current, or the run says which is not (issue: stores on
//! their own SQL Server). The lab world is the judge.

use serde_json::Value;

use crate::common::{Scratch, code, fixture, item, stderr, stdout};

fn scratch_with_fabrikam() -> Scratch {
    let s = Scratch::new();
    std::fs::copy(fixture("fabrikam.toml"), s.path().join("fabrikam.toml")).unwrap();
    let o = s.run(&["lab", "init", "lab", "--topology", "fabrikam.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    s
}

fn apply(s: &Scratch, only: &[&str]) -> std::process::Output {
    let mut args = vec![
        "apply",
        "fabrikam.toml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
        "--max-parallel",
        "3",
    ];
    for o in only {
        args.extend(["--only", o]);
    }
    s.run(&args)
}

fn behind(lab: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for i in lab["sql_instances"].as_array().unwrap() {
        for d in i["stores"].as_array().unwrap() {
            if d["version"] != d["expected_version"] {
                out.push(format!(
                    "{} {}",
                    i["sql_server_fqdn"].as_str().unwrap(),
                    d["database"].as_str().unwrap()
                ));
            }
        }
    }
    out
}

#[test]
fn a_monitoring_sql_server_of_its_own_is_updated_once_from_a_patched_server() {
    let s = scratch_with_fabrikam();
    let o = apply(&s, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    assert_eq!(behind(&lab), Vec::<String>::new(), "{lab}");
    let mon = item(&lab, "servers", "fqdn", "sqlmon.fabrikam.com");
    assert_eq!(mon["kind"], "store", "{mon}");
    assert_eq!(mon["refused_commands"], 0, "{mon}");
    assert_eq!(mon["installer_runs"], 0, "{mon}");
    let status = s.status_json("state.db");
    let sv = item(&status, "servers", "fqdn", "sqlmon.fabrikam.com");
    assert_eq!(sv["kind"], "store");
    assert_eq!(
        item(sv, "steps", "id", "update-databases")["state"],
        "succeeded"
    );
    assert!(
        stderr(&o).contains(
            "Test-CsDatabase: all 31 databases of the deployment at their expected version"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_store_left_behind_fails_the_run_and_names_each_database() {
    let s = scratch_with_fabrikam();
    // Only the Standard Edition server: the separate Monitoring server's databases now lag
    // behind the newest build in the deployment.
    let o = apply(&s, &["se01.fabrikam.com"]);
    assert_eq!(code(&o), 1, "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "Test-CsDatabase: 2 database(s) behind their expected version: \
             sqlmon.fabrikam.com LcsCDR: installed 12.2046.0, expected 12.2046.553; \
             sqlmon.fabrikam.com QoEMetrics: installed 12.2046.0, expected 12.2046.553"
        ),
        "{err}"
    );
    let lab = s.lab_json("lab");
    assert_eq!(
        behind(&lab),
        [
            "sqlmon.fabrikam.com LcsCDR",
            "sqlmon.fabrikam.com QoEMetrics"
        ]
    );
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "failed");
    let dbs = status["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 31);
    let cdr = dbs.iter().find(|d| d["database"] == "LcsCDR").unwrap();
    assert_eq!(cdr["sql_server_fqdn"], "sqlmon.fabrikam.com");
    assert_eq!(cdr["installed_version"], "12.2046.0");
    assert_eq!(cdr["expected_version"], "12.2046.553");
}

#[test]
fn applying_the_same_package_twice_touches_nothing_the_second_time() {
    let s = scratch_with_fabrikam();
    let first = apply(&s, &[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let before = s.lab_json("lab");
    let second = apply(&s, &[]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let after = s.lab_json("lab");
    // No outage, no installer run, no service stopped: the world is as the first run left it,
    // the clock aside.
    assert_eq!(before["servers"], after["servers"]);
    assert_eq!(before["pools"], after["pools"]);
    let status = s.status_json("state.db");
    for sv in status["servers"].as_array().unwrap() {
        let expected = if sv["fqdn"] == "sqlag01a.fabrikam.com" {
            // Its databases are the AlwaysOn group's, updated by the other node.
            "succeeded"
        } else {
            "already-current"
        };
        assert_eq!(sv["state"], expected, "{sv}");
        assert!(sv["outage_seconds"].is_null(), "{sv}");
    }
    let fe = item(&status, "servers", "fqdn", "fe01.fabrikam.com");
    let install = item(fe, "steps", "id", "install-update");
    assert_eq!(install["state"], "not-applicable");
    assert_eq!(
        install["reason"],
        "the pre-flight found build 7.0.2046.553 installed already"
    );
}

//! `sfbpatch probe`: what every machine runs, read before the night without changing anything.

use serde_json::Value;

use crate::common::{self, NEW, OLD, Scratch, code, item, stderr, stdout};

fn probe(s: &Scratch, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "probe",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
    ];
    args.extend(extra);
    s.run(&args)
}

fn probe_json(s: &Scratch, extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend(extra);
    let o = probe(s, &args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("probe json")
}

fn machine<'a>(v: &'a Value, fqdn: &str) -> &'a Value {
    item(v, "machines", "fqdn", fqdn)
}

#[test]
fn probe_reads_what_each_kind_of_machine_runs_and_changes_nothing() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let before = s.lab_json("lab");
    let v = probe_json(&s, &[]);
    assert_eq!(s.lab_json("lab"), before, "probe changed the lab");
    assert!(
        !s.path().join("state.db").exists(),
        "a lab probe records nothing"
    );
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["package_build"], NEW);
    let machines = v["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 13, "{v:#}");

    let fe = machine(&v, "fe11.berlin.demo.example");
    assert_eq!(fe["kind"], "front-end");
    assert_eq!(fe["pool"], "fepool1.berlin.demo.example");
    assert_eq!(fe["facts"]["build"], OLD);
    assert_eq!(fe["product_line"], "Skype for Business Server 2019");
    assert_eq!(fe["facts"]["w3svc"], true);
    assert_eq!(fe["facts"]["management_shell"], true);
    assert_eq!(fe["facts"]["sql_server"], false);
    let services = fe["facts"]["services"].as_array().unwrap();
    assert!(services.iter().any(|s| s == "RTCSRV"), "{fe}");
    assert_eq!(fe["facts"]["services_running"], services.len());
    assert_eq!(fe["verdict"], format!("to patch: build {OLD} installed"));

    // A SQL-only back end: SQL Server and nothing of Skype for Business or IIS.
    let sql = machine(&v, "sqlbe1.berlin.demo.example");
    assert_eq!(sql["kind"], "back-end");
    assert_eq!(sql["facts"]["services"], serde_json::json!([]));
    assert_eq!(sql["facts"]["w3svc"], false);
    assert_eq!(sql["facts"]["management_shell"], false);
    assert_eq!(sql["facts"]["sql_server"], true);
    assert!(sql["facts"].get("build").is_none(), "{sql}");
    assert!(sql.get("product_line").is_none(), "{sql}");
    assert_eq!(
        sql["verdict"],
        "no Skype for Business components: only its databases are updated, from another server"
    );

    let se = machine(&v, "se1.dublin.demo.example");
    assert_eq!(se["kind"], "standard-edition");
    assert_eq!(se["facts"]["sql_server"], true);
    assert_eq!(se["facts"]["w3svc"], true);
}

#[test]
fn probe_shows_the_components_a_back_end_was_given() {
    let s = Scratch::new();
    s.lab_init(
        "lab",
        &["--sfb-components-on", "sqlbe2.berlin.demo.example"],
    );
    let v = probe_json(&s, &["--only", "fepool2.berlin.demo.example"]);
    let sql = machine(&v, "sqlbe2.berlin.demo.example");
    assert_eq!(sql["facts"]["management_shell"], true, "{sql}");
    assert_eq!(sql["facts"]["build"], OLD, "{sql}");
    assert_eq!(sql["facts"]["services"], serde_json::json!([]));
    assert_eq!(sql["facts"]["w3svc"], false);
    assert_eq!(sql["verdict"], format!("to patch: build {OLD} installed"));
}

#[test]
fn after_a_run_probe_says_the_server_is_current() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let o = s.run(&common::apply_args(
        &["--lab", "lab"],
        &["se1.dublin.demo.example"],
        &[],
    ));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = probe_json(&s, &["--only", "se1.dublin.demo.example"]);
    let se = machine(&v, "se1.dublin.demo.example");
    assert_eq!(se["facts"]["build"], NEW);
    assert_eq!(se["facts"]["in_service"], true);
    assert_eq!(
        se["verdict"],
        "already current (on the package's build, in service): no outage; its databases are \
         probed before anything runs"
    );
}

#[test]
fn probe_text_for_people() {
    let s = Scratch::new();
    s.lab_init("lab", &[]);
    let o = probe(&s, &["--only", "fepool1.berlin.demo.example"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "read 4 machine(s); nothing was changed\n");
    common::redactions(Some(s.path())).bind(|| insta::assert_snapshot!(stdout(&o)));
}

#[test]
fn probe_refuses_bad_input_before_reading_anything() {
    let s = Scratch::new();
    let o = probe(&s, &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("lab"), "{}", stderr(&o));
    let o = s.run(&[
        "probe",
        "demo-topology.xml",
        "--package",
        "demo-package.toml",
        "--target",
        "ssh",
        "--lab",
        "lab",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: --lab is for --target lab; --target ssh reaches the servers themselves\n"
    );
}

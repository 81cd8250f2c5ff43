//! Reading inputs and showing what would be done: `topology show`, `topology generate`, `plan`,
//! their answers to bad input, help, the man page, completions and colour.
//!
//! Commands run from the repository root with relative paths, so that messages read as an
//! administrator would see them; snapshots hold the whole transcript (command, exit code,
//! stdout, stderr).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::{self, Scratch, code, stderr, stdout};

const FIXTURES: &str = "crates/topology/tests/fixtures";
const DEMO_TOPOLOGY: &str = "crates/cli/assets/demo-topology.xml";
const DEMO_PACKAGE: &str = "crates/cli/assets/demo-package.toml";
/// The demo's update with its installer on a file share.
const SHARE_PACKAGE: &str = "crates/cli/tests/it/packages/share-package.toml";
/// A Skype for Business Server 2015 update.
const PACKAGE_2015: &str = "crates/cli/tests/it/packages/cu-2015.toml";

/// The repository root, as the operating system spells it.
fn root() -> PathBuf {
    std::fs::canonicalize(common::repo()).expect("repository root")
}

/// `sfbpatch` in `dir`, detached from any terminal, with help wrapped at 100 columns and
/// nothing in the environment that forces colour.
fn command_in(dir: &Path) -> Command {
    let mut cmd = common::bin();
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .env("COLUMNS", "100")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR");
    cmd
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    command_in(dir).args(args).output().expect("sfbpatch runs")
}

/// `sfbpatch ARGS` from the repository root.
fn sfbpatch(args: &[&str]) -> Output {
    run_in(&root(), args)
}

/// What a person at the terminal would see, in one comparable text.
fn transcript(args: &[&str], o: &Output) -> String {
    fn stream(name: &str, text: &str) -> String {
        if text.is_empty() {
            format!("--- {name}: empty ---\n")
        } else if text.ends_with('\n') {
            format!("--- {name} ---\n{text}")
        } else {
            format!("--- {name} ---\n{text}\n(no newline at the end)\n")
        }
    }
    format!(
        "$ sfbpatch {}\nexit code: {}\n{}{}",
        args.join(" "),
        code(o),
        stream("stdout", &stdout(o)),
        stream("stderr", &stderr(o))
    )
}

/// Snapshot `text` under `name`, with machine-specific paths redacted.
fn snapshot(name: &str, dir: Option<&Path>, text: &str) {
    common::redactions(dir).bind(|| insta::assert_snapshot!(name, text));
}

/// Run from the repository root and snapshot the transcript.
fn snapshot_run(name: &str, args: &[&str]) -> Output {
    let o = sfbpatch(args);
    snapshot(name, None, &transcript(args, &o));
    o
}

/// A file name as a snapshot name: `fabrikam.tbxml` → `fabrikam_tbxml`.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The names in the fixtures folder that `keep` accepts, sorted.
fn fixture_names(keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(FIXTURES))
        .expect("fixtures folder")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .filter(|n| !n.starts_with('.') && keep(n))
        .collect();
    names.sort();
    names
}

/// The topologies that read: every `.xml`, `.tbxml` and `.toml` not named `bad-*`.
fn good_fixtures() -> Vec<String> {
    fixture_names(|n| {
        !n.starts_with("bad-") && [".xml", ".tbxml", ".toml"].iter().any(|e| n.ends_with(e))
    })
}

fn bad_fixtures() -> Vec<String> {
    fixture_names(|n| n.starts_with("bad-"))
}

fn json(o: &Output) -> Value {
    assert_eq!(code(o), 0, "{}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(o)))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// Exit 2, nothing on stdout, and exactly one line on stderr: `error: MESSAGE`.
fn assert_bad_input(o: &Output, message: &str) {
    assert_eq!(code(o), 2, "{}", transcript(&[], o));
    assert_eq!(stdout(o), "", "bad input writes no data");
    assert_eq!(stderr(o), format!("error: {message}\n"));
}

// ---------------------------------------------------------------------------------------------
// topology show

#[test]
fn topology_show_every_project_fixture_as_text_and_json() {
    let names = good_fixtures();
    assert!(names.len() >= 9, "fixtures: {names:?}");
    for name in &names {
        let path = format!("{FIXTURES}/{name}");
        let text = snapshot_run(
            &format!("show_{}_text", slug(name)),
            &["topology", "show", &path],
        );
        assert_eq!(code(&text), 0, "{name}: {}", stderr(&text));
        assert_eq!(stderr(&text), "", "{name}: data only, no messages");

        let args = ["topology", "show", path.as_str(), "--format", "json"];
        let o = snapshot_run(&format!("show_{}_json", slug(name)), &args);
        let v = json(&o);
        assert_eq!(stderr(&o), "", "{name}");
        assert_eq!(v["schema_version"], 1, "{name}");
        let pools = v["pools"].as_array().expect("pools");
        assert!(!pools.is_empty(), "{name}");
        assert!(
            stdout(&text).ends_with(&format!("{} pool(s) with a back end\n", pools.len())),
            "{name}: text and JSON count the same pools"
        );
    }
}

#[test]
fn a_utf16_export_reads_like_its_utf8_original() {
    // `Get-CsTopology -AsXml > topology.xml` in Windows PowerShell writes UTF-16 LE with a BOM.
    let scratch = Scratch::new();
    let text = std::fs::read_to_string(scratch.path().join("demo-topology.xml")).unwrap();
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let mut utf16 = vec![0xff, 0xfe];
    for unit in text.replace('\n', "\r\n").encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    std::fs::write(scratch.path().join("utf16.xml"), utf16).unwrap();
    for format in ["text", "json"] {
        let original = run_in(
            scratch.path(),
            &["topology", "show", "demo-topology.xml", "--format", format],
        );
        let exported = run_in(
            scratch.path(),
            &["topology", "show", "utf16.xml", "--format", format],
        );
        assert_eq!(code(&original), 0, "{}", stderr(&original));
        assert_eq!(code(&exported), 0, "{}", stderr(&exported));
        assert_eq!(stdout(&exported), stdout(&original), "{format}");
    }
}

#[test]
fn the_three_formats_of_fabrikam_show_the_same_deployment() {
    for format in ["text", "json"] {
        let outputs: Vec<String> = ["fabrikam.xml", "fabrikam.tbxml", "fabrikam.toml"]
            .iter()
            .map(|name| {
                let path = format!("{FIXTURES}/{name}");
                let o = sfbpatch(&["topology", "show", &path, "--format", format]);
                assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
                stdout(&o)
            })
            .collect();
        assert_eq!(
            outputs[0], outputs[1],
            "published and Topology Builder ({format})"
        );
        assert_eq!(outputs[0], outputs[2], "published and inventory ({format})");
    }
}

#[test]
fn fabrikam_covers_the_three_variants_always_on_remote_monitoring_and_two_sites() {
    let v = json(&sfbpatch(&[
        "topology",
        "show",
        &format!("{FIXTURES}/fabrikam.xml"),
        "--format",
        "json",
    ]));
    let pools = v["pools"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str, &str, &str, bool, &str)> = pools
        .iter()
        .map(|p| {
            let b = &p["backend"];
            (
                field(p, "fqdn"),
                field(p, "site"),
                field(p, "edition"),
                field(b, "sql_server_fqdn"),
                field(b, "sql_instance"),
                b["always_on"].as_bool().unwrap(),
                field(p, "database_update"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "pool01.fabrikam.com",
                "Redmond",
                "enterprise",
                "sql01.fabrikam.com",
                "",
                false,
                "configured"
            ),
            (
                "pool02.fabrikam.com",
                "Redmond",
                "enterprise",
                "sql02.fabrikam.com",
                "rtc",
                false,
                "configured-exclude-collocated"
            ),
            (
                "se01.fabrikam.com",
                "Dublin",
                "standard",
                "se01.fabrikam.com",
                "rtc",
                false,
                "local"
            ),
            (
                "pool03.fabrikam.com",
                "Dublin",
                "enterprise",
                "ag01.fabrikam.com",
                "",
                true,
                "configured"
            ),
        ]
    );
    // Monitoring lives on sqlmon, another SQL server: not on pool01's back end, not collocated.
    assert_eq!(
        strings(&pools[0]["backend"]["stores"]),
        ["user", "application", "central-management"]
    );
    assert!(strings(&pools[0]["backend"]["collocated_stores"]).is_empty());
    assert_eq!(
        strings(&pools[1]["backend"]["collocated_stores"]),
        ["archiving", "monitoring"]
    );
    assert_eq!(
        field(&pools[3]["backend"], "always_on_primary"),
        "sqlag01a.fabrikam.com"
    );
}

// ---------------------------------------------------------------------------------------------
// The public samples: what SOURCES.md says each must yield.

/// `topology show --format json` of a public sample, or `None` when the samples are absent.
fn public_show(name: &str) -> Option<Value> {
    let path = common::public_fixture(name)?;
    let path = path.display().to_string();
    let o = sfbpatch(&["topology", "show", &path, "--format", "json"]);
    assert_eq!(stderr(&o), "", "{name}");
    Some(json(&o))
}

/// `plan --format json` and `plan` (text) of a public sample with a package of its product
/// line, after checking that a package of the other line is refused before anything.
fn public_plan(name: &str) -> Option<(Value, String)> {
    let path = common::public_fixture(name)?;
    let path = path.display().to_string();
    let o = sfbpatch(&["topology", "show", &path, "--format", "json"]);
    let product = field(only_pool(&json(&o)), "product").to_string();
    let (right, wrong, wrong_line) = match product.as_str() {
        "sfb-2015" => (
            PACKAGE_2015,
            DEMO_PACKAGE,
            "Skype for Business Server 2019 (7.0.2046.*)",
        ),
        "sfb-2019" => (
            DEMO_PACKAGE,
            PACKAGE_2015,
            "Skype for Business Server 2015 (6.0.9319.*)",
        ),
        other => panic!("{name}: product {other}"),
    };
    let o = sfbpatch(&["plan", &path, "--package", wrong]);
    assert_eq!(code(&o), 2, "{name}: {}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains(&format!("is for {wrong_line}, but "))
            && stderr(&o).ends_with("must never be applied to another [SFB-P010]\n"),
        "{name}: {}",
        stderr(&o)
    );
    let o = sfbpatch(&["plan", &path, "--package", right, "--format", "json"]);
    assert_eq!(stderr(&o), "", "{name}");
    let plan = json(&o);
    let o = sfbpatch(&["plan", &path, "--package", right]);
    assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
    Some((plan, stdout(&o)))
}

/// The one pool of a sample, after checking there is exactly one.
fn only_pool(v: &Value) -> &Value {
    let pools = v["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 1, "one pool with a back end: {v:#}");
    &pools[0]
}

/// Each machine's FQDN and upgrade domain.
fn machines(pool: &Value) -> Vec<(&str, &str)> {
    pool["machines"]
        .as_array()
        .expect("machines")
        .iter()
        .map(|m| (field(m, "fqdn"), field(m, "upgrade_domain")))
        .collect()
}

/// Each planned machine that has an `update-databases` step (not the Front End servers): its
/// FQDN, pool, kind and the step's command (none on the AlwaysOn nodes that leave it to the
/// last node), with where the command runs (`run_on`, or the machine itself).
fn update_commands(plan: &Value) -> Vec<(&str, &str, &str, Option<&str>)> {
    plan["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| {
            let step = s["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .find(|st| st["id"] == "update-databases")?;
            Some((
                field(s, "fqdn"),
                field(s, "pool"),
                field(s, "kind"),
                step["command"].as_str(),
            ))
        })
        .collect()
}

/// Each planned machine's FQDN and kind, in plan order.
fn planned_machines(plan: &Value) -> Vec<(&str, &str)> {
    plan["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| (field(s, "fqdn"), field(s, "kind")))
        .collect()
}

/// Where each machine's `update-databases` runs: its `run_on`, or the machine itself.
fn update_hosts(plan: &Value) -> Vec<(&str, &str)> {
    plan["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| {
            let step = s["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|st| st["id"] == "update-databases" && st["command"].is_string())?;
            Some((
                field(s, "fqdn"),
                step["run_on"].as_str().unwrap_or_else(|| field(s, "fqdn")),
            ))
        })
        .collect()
}

#[test]
#[ignore = "needs the public topology samples (../shared/fixtures/public or SFBPATCH_PUBLIC_FIXTURES): scripts/test runs this"]
fn public_automatedlab_contoso() {
    let Some(v) = public_show("automatedlab-contoso.tbxml") else {
        return;
    };
    let pool = only_pool(&v);
    assert_eq!(field(pool, "fqdn"), "frontendpool.contoso.com");
    assert_eq!(field(pool, "edition"), "enterprise");
    assert_eq!(field(pool, "product"), "sfb-2015");
    assert_eq!(
        machines(pool),
        [
            ("xfrontend1.contoso.com", "UpgradeDomain1"),
            ("xfrontend2.contoso.com", "UpgradeDomain2"),
            ("xfrontend3.contoso.com", "UpgradeDomain3"),
            ("xfrontend4.contoso.com", "UpgradeDomain4"),
        ]
    );
    let b = &pool["backend"];
    assert_eq!(field(b, "sql_server_fqdn"), "xSQL1.contoso.com");
    assert_eq!(field(b, "sql_instance"), "");
    assert_eq!(b["always_on"], false);
    assert_eq!(
        strings(&b["stores"]),
        ["user", "application", "archiving", "monitoring"]
    );
    assert_eq!(
        strings(&b["collocated_stores"]),
        ["archiving", "monitoring"]
    );
    assert_eq!(
        field(pool, "database_update"),
        "configured-exclude-collocated"
    );
    assert!(
        !v.to_string().contains("edgepool.contoso.com"),
        "the Edge pool has no back end"
    );

    let (plan, text) = public_plan("automatedlab-contoso.tbxml").unwrap();
    let command = "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn \
                   xSQL1.contoso.com -ExcludeCollocatedStores";
    assert_eq!(
        update_commands(&plan),
        [(
            "xSQL1.contoso.com",
            "frontendpool.contoso.com",
            "back-end",
            Some(command)
        )]
    );
    assert_eq!(text.matches(command).count(), 1, "{text}");
    // The four Front End servers, one at a time in upgrade-domain order, then the back end,
    // whose databases are updated from the last of them.
    assert_eq!(
        planned_machines(&plan),
        [
            ("xfrontend1.contoso.com", "front-end"),
            ("xfrontend2.contoso.com", "front-end"),
            ("xfrontend3.contoso.com", "front-end"),
            ("xfrontend4.contoso.com", "front-end"),
            ("xSQL1.contoso.com", "back-end"),
        ]
    );
    assert_eq!(
        update_hosts(&plan),
        [("xSQL1.contoso.com", "xfrontend4.contoso.com")]
    );
}

#[test]
#[ignore = "needs the public topology samples (../shared/fixtures/public or SFBPATCH_PUBLIC_FIXTURES): scripts/test runs this"]
fn public_alvinchen1_otc() {
    let Some(v) = public_show("alvinchen1-otc.tbxml") else {
        return;
    };
    let pool = only_pool(&v);
    assert_eq!(field(pool, "fqdn"), "OCT-EXH-002.otc.lab");
    assert_eq!(field(pool, "edition"), "standard");
    assert_eq!(field(pool, "product"), "sfb-2019");
    assert_eq!(
        machines(pool),
        [("OCT-EXH-002.otc.lab", "OCT-EXH-002.otc.lab")]
    );
    let b = &pool["backend"];
    assert_eq!(field(b, "sql_server_fqdn"), "OCT-EXH-002.otc.lab");
    assert_eq!(field(b, "sql_instance"), "rtc");
    assert_eq!(b["always_on"], false);
    assert_eq!(strings(&b["stores"]), ["user", "application"]);
    assert!(strings(&b["collocated_stores"]).is_empty());
    assert_eq!(field(pool, "database_update"), "local");

    let (plan, text) = public_plan("alvinchen1-otc.tbxml").unwrap();
    let command = "Install-CsDatabase -Update -LocalDatabases";
    assert_eq!(
        update_commands(&plan),
        [(
            "OCT-EXH-002.otc.lab",
            "OCT-EXH-002.otc.lab",
            "standard-edition",
            Some(command)
        )]
    );
    assert_eq!(text.matches(command).count(), 1, "{text}");
}

#[test]
#[ignore = "needs the public topology samples (../shared/fixtures/public or SFBPATCH_PUBLIC_FIXTURES): scripts/test runs this"]
fn public_rlevchenko_default_topology() {
    let Some(v) = public_show("rlevchenko-default-topology.xml") else {
        return;
    };
    let pool = only_pool(&v);
    assert_eq!(field(pool, "fqdn"), "poolfe.tenant.rlevchenko.com");
    assert_eq!(field(pool, "edition"), "enterprise");
    assert_eq!(field(pool, "product"), "sfb-2015");
    assert_eq!(
        machines(pool),
        [("SKYPE-FE-01.tenant.rlevchenko.com", "UpgradeDomain1")]
    );
    let b = &pool["backend"];
    assert_eq!(
        field(b, "sql_server_fqdn"),
        "srv-sql-01.tenant.rlevchenko.com"
    );
    assert_eq!(field(b, "sql_instance"), "");
    assert_eq!(b["always_on"], true);
    assert_eq!(
        field(b, "always_on_primary"),
        "srv-sql-01.tenant.rlevchenko.com"
    );
    assert_eq!(
        strings(&b["stores"]),
        ["user", "application", "central-management"]
    );
    assert!(strings(&b["collocated_stores"]).is_empty());
    assert_eq!(field(pool, "database_update"), "configured");

    let (plan, text) = public_plan("rlevchenko-default-topology.xml").unwrap();
    let command = "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn srv-sql-01.tenant.rlevchenko.com";
    assert_eq!(
        update_commands(&plan),
        [(
            "srv-sql-01.tenant.rlevchenko.com",
            "poolfe.tenant.rlevchenko.com",
            "back-end",
            Some(command)
        )]
    );
    assert_eq!(text.matches(command).count(), 1, "{text}");
    assert_eq!(
        planned_machines(&plan)[0],
        ("SKYPE-FE-01.tenant.rlevchenko.com", "front-end")
    );
    assert_eq!(
        update_hosts(&plan),
        [(
            "srv-sql-01.tenant.rlevchenko.com",
            "SKYPE-FE-01.tenant.rlevchenko.com"
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// plan

/// The seed's eleven steps: a Standard Edition server's procedure, and every back-end
/// machine's step list (those it has no object for are not applicable).
const STEPS: [&str; 11] = [
    "check-admin-role",
    "stage-update",
    "stop-cs-services",
    "stop-w3svc",
    "close-management-shells",
    "install-update",
    "stop-cs-services-gac",
    "start-w3svc",
    "update-databases",
    "start-cs-services",
    "verify",
];

/// A Front End server's procedure (SPEC.md section 6).
const FRONT_END_STEPS: [&str; 13] = [
    "check-admin-role",
    "stage-update",
    "check-fabric-state",
    "failover",
    "stop-cs-services",
    "stop-w3svc",
    "close-management-shells",
    "install-update",
    "stop-cs-services-gac",
    "start-w3svc",
    "start-cs-services",
    "failback",
    "verify",
];

/// `plan` of the demo topology in every format, with `only` narrowing it.
fn snapshot_plans(name: &str, only: &[&str]) {
    for format in ["text", "json", "powershell"] {
        // A script run by hand on a server stages from a share, not from this machine.
        let package = if format == "powershell" {
            SHARE_PACKAGE
        } else {
            DEMO_PACKAGE
        };
        let mut args = vec!["plan", DEMO_TOPOLOGY, "--package", package];
        args.extend(["--format", format]);
        for o in only {
            args.extend(["--only", o]);
        }
        let o = snapshot_run(&format!("plan_{name}_{format}"), &args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "data only, no messages");
    }
}

#[test]
fn plan_demo_in_every_format() {
    snapshot_plans("demo", &[]);
}

#[test]
fn plan_demo_only_an_always_on_pool() {
    snapshot_plans("demo_only_pool", &["fepool3.dublin.demo.example"]);
}

#[test]
fn plan_demo_only_one_server() {
    snapshot_plans("demo_only_server", &["sqlbe2.berlin.demo.example"]);
}

#[test]
fn plan_json_is_the_documented_contract() {
    let args = [
        "plan",
        DEMO_TOPOLOGY,
        "--package",
        DEMO_PACKAGE,
        "--format",
        "json",
    ];
    let o = sfbpatch(&args);
    assert_eq!(stderr(&o), "", "stderr stays empty when stdout is JSON");
    let v = json(&o);
    assert_eq!(v["schema_version"], 2);
    assert_eq!(
        v["package"],
        serde_json::json!({
            "name": "Skype for Business Server 2019 CU8 HF1 (lab)",
            "version": "7.0.2046.553",
            "sha256": "c30d976f4b3e363089ddb18e014b0eabc3ca71ab51f5466f351427d8097aa4fd",
        })
    );
    let servers = v["servers"].as_array().unwrap();
    let who: Vec<(&str, &str, &str)> = servers
        .iter()
        .map(|s| {
            (
                field(s, "fqdn"),
                field(s, "kind"),
                field(s, "database_update"),
            )
        })
        .collect();
    // Each pool's Front End servers, then its back end; the Standard Edition servers last.
    let (fe, be, se) = ("front-end", "back-end", "standard-edition");
    let (c, cx, l) = ("configured", "configured-exclude-collocated", "local");
    assert_eq!(
        who,
        [
            ("fe11.berlin.demo.example", fe, c),
            ("fe12.berlin.demo.example", fe, c),
            ("fe13.berlin.demo.example", fe, c),
            ("sqlbe1.berlin.demo.example", be, c),
            ("fe21.berlin.demo.example", fe, cx),
            ("fe22.berlin.demo.example", fe, cx),
            ("sqlbe2.berlin.demo.example", be, cx),
            ("fe31.dublin.demo.example", fe, c),
            ("fe32.dublin.demo.example", fe, c),
            ("sqlag-n1.dublin.demo.example", be, c),
            ("sqlag-n2.dublin.demo.example", be, c),
            ("se1.dublin.demo.example", se, l),
            ("se2.dublin.demo.example", se, l),
        ]
    );
    for s in servers {
        let fqdn = field(s, "fqdn");
        let steps = s["steps"].as_array().unwrap();
        let ids: Vec<&str> = steps.iter().map(|st| field(st, "id")).collect();
        let in_outage = |st: &Value| st["in_outage"].as_bool().unwrap();
        match field(s, "kind") {
            "front-end" => {
                assert_eq!(ids, FRONT_END_STEPS, "{fqdn}");
                // Out of the pool from failover to failback.
                let outage: Vec<bool> = steps.iter().map(in_outage).collect();
                let expected: Vec<bool> = (1..=13).map(|n| (4..=12).contains(&n)).collect();
                assert_eq!(outage, expected, "{fqdn}");
                assert!(s["upgrade_domain"].is_string(), "{fqdn}");
            }
            "standard-edition" => {
                assert_eq!(ids, STEPS, "{fqdn}");
                let outage: Vec<bool> = steps.iter().map(in_outage).collect();
                let expected: Vec<bool> = (1..=11).map(|n| (3..=10).contains(&n)).collect();
                assert_eq!(outage, expected, "{fqdn}");
            }
            _ => {
                assert_eq!(ids, STEPS, "{fqdn}");
                // A SQL-only back end: nothing of Skype for Business or IIS to stop, install
                // or start; its only outage is the database update.
                for st in steps {
                    let applies = st["not_applicable"].is_null();
                    let id = field(st, "id");
                    assert_eq!(
                        applies,
                        ["check-admin-role", "update-databases", "verify"].contains(&id)
                            && (fqdn != "sqlag-n1.dublin.demo.example" || id == "update-databases"),
                        "{fqdn} {st}"
                    );
                    assert_eq!(
                        in_outage(st),
                        id == "update-databases" && fqdn != "sqlag-n1.dublin.demo.example",
                        "{fqdn} {st}"
                    );
                }
                assert!(
                    !s["after"].as_array().unwrap().is_empty(),
                    "{fqdn} waits for its pool"
                );
            }
        }
    }
    // Exactly one real database update per back end (on the AlwaysOn group, on the last node),
    // each run from the pool's last Front End server, which has the new build by then.
    let updates: Vec<(&str, &str)> = update_commands(&v)
        .into_iter()
        .filter_map(|(fqdn, .., command)| Some((fqdn, command?)))
        .collect();
    assert_eq!(
        updates,
        [
            (
                "sqlbe1.berlin.demo.example",
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sqlbe1.berlin.demo.example"
            ),
            (
                "sqlbe2.berlin.demo.example",
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sqlbe2.berlin.demo.example -ExcludeCollocatedStores"
            ),
            (
                "sqlag-n2.dublin.demo.example",
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sqlag.dublin.demo.example"
            ),
            (
                "se1.dublin.demo.example",
                "Install-CsDatabase -Update -LocalDatabases"
            ),
            (
                "se2.dublin.demo.example",
                "Install-CsDatabase -Update -LocalDatabases"
            ),
        ]
    );
    assert_eq!(
        update_hosts(&v),
        [
            ("sqlbe1.berlin.demo.example", "fe13.berlin.demo.example"),
            ("sqlbe2.berlin.demo.example", "fe22.berlin.demo.example"),
            ("sqlag-n2.dublin.demo.example", "fe32.dublin.demo.example"),
            ("se1.dublin.demo.example", "se1.dublin.demo.example"),
            ("se2.dublin.demo.example", "se2.dublin.demo.example"),
        ]
    );
}

#[test]
fn only_compares_fqdns_case_insensitively_and_repeats() {
    let base = [
        "plan",
        DEMO_TOPOLOGY,
        "--package",
        DEMO_PACKAGE,
        "--format",
        "json",
    ];
    let lower = sfbpatch(&[&base[..], &["--only", "sqlbe2.berlin.demo.example"]].concat());
    let upper = sfbpatch(&[&base[..], &["--only", "SQLBE2.Berlin.Demo.Example"]].concat());
    assert_eq!(code(&upper), 0, "{}", stderr(&upper));
    assert_eq!(stdout(&lower), stdout(&upper));

    let both = sfbpatch(
        &[
            &base[..],
            &[
                "--only",
                "FEPOOL1.berlin.demo.example",
                "--only",
                "se2.dublin.demo.example",
            ],
        ]
        .concat(),
    );
    let v = json(&both);
    let fqdns: Vec<&str> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| field(s, "fqdn"))
        .collect();
    // A pool is its Front End servers and its back end.
    assert_eq!(
        fqdns,
        [
            "fe11.berlin.demo.example",
            "fe12.berlin.demo.example",
            "fe13.berlin.demo.example",
            "sqlbe1.berlin.demo.example",
            "se2.dublin.demo.example"
        ]
    );
}

#[test]
fn every_project_fixture_plans_one_real_database_update_per_back_end() {
    for name in good_fixtures() {
        let path = format!("{FIXTURES}/{name}");
        let o = sfbpatch(&["plan", &path, "--package", DEMO_PACKAGE, "--format", "json"]);
        if name.starts_with("mirrored") {
            // Install-CsDatabase -Update cannot run against mirrored databases.
            assert_eq!(code(&o), 2, "{name}: {}", stdout(&o));
            assert!(stderr(&o).contains("[SFB-P002]"), "{name}: {}", stderr(&o));
            continue;
        }
        let plan = json(&o);
        let show = json(&sfbpatch(&["topology", "show", &path, "--format", "json"]));
        // One per back end (pools sharing one share its update).
        let mut seen = std::collections::BTreeSet::new();
        let mut expected: Vec<String> = show["pools"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                seen.insert(field(&p["backend"], "sql_server_fqdn").to_ascii_lowercase())
            })
            .map(|p| {
                let fqdn = field(&p["backend"], "sql_server_fqdn");
                match field(p, "database_update") {
                    "configured" => format!(
                        "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn {fqdn}"
                    ),
                    "configured-exclude-collocated" => format!(
                        "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn {fqdn} -ExcludeCollocatedStores"
                    ),
                    "local" => "Install-CsDatabase -Update -LocalDatabases".to_string(),
                    other => panic!("{name}: unknown variant {other}"),
                }
            })
            .collect();
        // And one per SQL Server holding only other pools' stores (a shared Monitoring
        // server, say), once every pool using them runs the new build.
        let backends: Vec<&str> = show["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| field(&p["backend"], "sql_server_fqdn"))
            .collect();
        let used: Vec<&str> = show["pools"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| strings(&p["uses_stores_on"]))
            .collect();
        for sql in show["sql_servers"].as_array().unwrap() {
            let fqdn = field(sql, "sql_server_fqdn");
            if !backends.iter().any(|b| b.eq_ignore_ascii_case(fqdn))
                && used.iter().any(|u| u.eq_ignore_ascii_case(fqdn))
            {
                expected.push(format!(
                    "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn {fqdn}"
                ));
            }
        }
        let mut planned: Vec<String> = update_commands(&plan)
            .into_iter()
            .filter_map(|(.., command)| Some(command?.to_string()))
            .collect();
        expected.sort();
        planned.sort();
        assert_eq!(planned, expected, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit code 2, one message naming file, line, column and element, nothing on stdout.

#[test]
fn every_bad_topology_fixture_is_refused_by_show_and_plan() {
    let names = bad_fixtures();
    assert!(names.len() >= 20, "bad fixtures: {names:?}");
    for name in &names {
        let path = format!("{FIXTURES}/{name}");
        let show_args = ["topology", "show", path.as_str()];
        let plan_args = ["plan", path.as_str(), "--package", DEMO_PACKAGE];
        let show = sfbpatch(&show_args);
        let plan = sfbpatch(&plan_args);
        snapshot(
            &format!("bad_{}", slug(name.trim_start_matches("bad-"))),
            None,
            &format!(
                "{}\n{}",
                transcript(&show_args, &show),
                transcript(&plan_args, &plan)
            ),
        );
        for o in [&show, &plan] {
            assert_eq!(code(o), 2, "{name}");
            assert_eq!(stdout(o), "", "{name}: nothing on stdout");
            let message = stderr(o);
            assert_eq!(message.lines().count(), 1, "{name}: one line\n{message}");
            let rest = message
                .strip_prefix(&format!("error: {path}:"))
                .unwrap_or_else(|| panic!("{name}: names the file\n{message}"));
            let mut position = rest.splitn(3, ':');
            for what in ["line", "column"] {
                let n = position.next().unwrap_or_default();
                assert!(
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
                    "{name}: names the {what}\n{message}"
                );
            }
            let end = message.trim_end();
            assert!(
                end.ends_with(']') && end[end.len() - 10..].starts_with("[SFB-T0"),
                "{name}: carries a stable code\n{message}"
            );
        }
        assert_eq!(stderr(&show), stderr(&plan), "{name}: the same message");
    }
}

#[test]
fn an_injection_attempt_never_reaches_a_command() {
    for name in [
        "bad-injection.xml",
        "bad-injection.tbxml",
        "bad-injection.toml",
    ] {
        let file = std::fs::read_to_string(common::fixture(name)).expect("fixture");
        assert!(file.contains("Remove-Item"), "{name} carries a command");
        let path = format!("{FIXTURES}/{name}");
        for format in ["text", "json", "powershell"] {
            let o = sfbpatch(&["plan", &path, "--package", DEMO_PACKAGE, "--format", format]);
            assert_eq!(code(&o), 2, "{name}");
            assert_eq!(stdout(&o), "", "{name} {format}");
            assert!(stderr(&o).contains("[SFB-T007]"), "{name}: {}", stderr(&o));
        }
    }
}

#[test]
fn a_mirrored_back_end_is_not_planned() {
    let o = snapshot_run(
        "plan_mirrored",
        &[
            "plan",
            &format!("{FIXTURES}/mirrored.xml"),
            "--package",
            DEMO_PACKAGE,
        ],
    );
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
}

#[test]
fn a_missing_file_is_named() {
    let o = snapshot_run(
        "missing_topology",
        &["topology", "show", "no-such-topology.xml"],
    );
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).starts_with("error: cannot read topology no-such-topology.xml: "),
        "{}",
        stderr(&o)
    );

    let o = snapshot_run(
        "missing_package",
        &["plan", DEMO_TOPOLOGY, "--package", "no-such-package.toml"],
    );
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).starts_with("error: cannot read package manifest no-such-package.toml: "),
        "{}",
        stderr(&o)
    );

    let o = sfbpatch(&["plan", "no-such-topology.xml", "--package", DEMO_PACKAGE]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("no-such-topology.xml"),
        "{}",
        stderr(&o)
    );
}

const SHA256: &str = "c30d976f4b3e363089ddb18e014b0eabc3ca71ab51f5466f351427d8097aa4fd";

/// A manifest that is valid except for `line`, which replaces the line with the same key or
/// is added at the end.
fn manifest_with(line: &str) -> String {
    let key = line.split([' ', '=']).next().unwrap();
    let mut lines = vec![
        "name = \"Skype for Business Server 2019 CU8 HF1\"".to_string(),
        "version = \"7.0.2046.553\"".to_string(),
        "installer = \"SkypeServerUpdateInstaller.exe\"".to_string(),
        format!("sha256 = \"{SHA256}\""),
    ];
    match lines.iter().position(|l| l.starts_with(&format!("{key} "))) {
        Some(i) => lines[i] = line.to_string(),
        None => lines.push(line.to_string()),
    }
    lines.join("\n") + "\n"
}

#[test]
fn bad_manifests_are_refused_with_the_exact_message() {
    let scratch = Scratch::new();
    let cases = [
        (
            "bad-sha256.toml",
            manifest_with("sha256 = \"c30d976f4b3e363089ddb18e014b0eab\""),
            "bad-sha256.toml:4:11: sha256: expected 64 hexadecimal characters, found 32 [SFB-M003]",
        ),
        (
            "bad-sha256-hex.toml",
            manifest_with(&format!("sha256 = \"{}z\"", &SHA256[..63])),
            "bad-sha256-hex.toml:4:11: sha256: expected 64 hexadecimal characters, found 'z' \
             [SFB-M003]",
        ),
        (
            "http-url.toml",
            manifest_with(
                "installer = \"http://download.example.com/SkypeServerUpdateInstaller.exe\"",
            ),
            "http-url.toml:3:14: installer: 'http://download.example.com/SkypeServerUpdateInstaller.exe' \
             uses plain http, which is refused: give an https:// URL, or download the installer \
             and give its path [SFB-M006]",
        ),
        (
            "unknown-key.toml",
            manifest_with("checksum = \"sha256\""),
            "unknown-key.toml:5:1: unknown key 'checksum' (known keys: name, version, installer, \
             sha256, product, schema_versions) [SFB-M002]",
        ),
        (
            "bad-version.toml",
            manifest_with("version = \"7.0.2046\""),
            "bad-version.toml:2:12: version: '7.0.2046' is not a build number like 7.0.2046.553 \
             (four numbers separated by dots) [SFB-M003]",
        ),
        (
            "version-not-a-string.toml",
            manifest_with("version = 7.0"),
            "version-not-a-string.toml:2:11: version: expected a string, found float [SFB-M005]",
        ),
        (
            "no-sha256.toml",
            manifest_with("sha256 = \"x\"")
                .lines()
                .filter(|l| !l.starts_with("sha256"))
                .map(|l| format!("{l}\n"))
                .collect(),
            "no-sha256.toml: sha256: required key is missing [SFB-M004]",
        ),
        (
            "several.toml",
            "nmae = \"CU\"\nversion = \"7.0.2046\"\ninstaler = \"x.exe\"\n".to_string(),
            "several.toml:1:1: unknown key 'nmae' (known keys: name, version, installer, sha256, \
             product, schema_versions) [SFB-M002]\n\
             several.toml:2:12: version: '7.0.2046' is not a build number like 7.0.2046.553 (four \
             numbers separated by dots) [SFB-M003]\n\
             several.toml:3:1: unknown key 'instaler' (known keys: name, version, installer, \
             sha256, product, schema_versions) [SFB-M002]\n\
             several.toml: name: required key is missing [SFB-M004]\n\
             several.toml: installer: required key is missing [SFB-M004]\n\
             several.toml: sha256: required key is missing [SFB-M004]",
        ),
        (
            "no-installer-file.toml",
            manifest_with("installer = \"cu/SkypeServerUpdateInstaller.exe\""),
            "installer [TMP]/cu/SkypeServerUpdateInstaller.exe cannot be read: No such file or \
             directory (os error 2) [SFB-P013]",
        ),
        (
            "wrong-file.toml",
            manifest_with("installer = \"other.exe\""),
            "installer [TMP]/other.exe has SHA-256 [HASH], the manifest says \
             c30d976f4b3e363089ddb18e014b0eabc3ca71ab51f5466f351427d8097aa4fd: not the package's \
             file [SFB-P014]",
        ),
    ];
    let mut transcripts = String::new();
    let other = scratch.write("other.exe", "not the installer\n");
    let other_hash = common::sha256sum(&other);
    let tmp = std::fs::canonicalize(scratch.path()).unwrap();
    for (file, text, message) in &cases {
        scratch.write(file, text);
        let args = ["plan", "demo-topology.xml", "--package", file];
        let o = run_in(scratch.path(), &args);
        let message = message
            .replace("[TMP]", &tmp.display().to_string())
            .replace("[HASH]", &other_hash);
        assert_bad_input(&o, &message);
        // apply refuses the same before it opens a store or a lab.
        let mut apply = args.to_vec();
        apply[0] = "apply";
        apply.extend(["--lab", "no-lab", "--state", "never.db", "--yes"]);
        let a = run_in(scratch.path(), &apply);
        assert_bad_input(&a, &message);
        assert!(!scratch.path().join("never.db").exists(), "{file}");
        transcripts.push_str(&transcript(&args, &o));
        transcripts.push('\n');
    }
    snapshot("bad_manifests", Some(scratch.path()), &transcripts);

    // The same manifest with the defect fixed is accepted: each case failed for its one reason.
    scratch.write("good.toml", &manifest_with("name = \"CU\""));
    let o = run_in(
        scratch.path(),
        &["plan", "demo-topology.xml", "--package", "good.toml"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn only_must_name_a_pool_or_a_planned_server() {
    let o = snapshot_run(
        "only_nothing",
        &[
            "plan",
            DEMO_TOPOLOGY,
            "--package",
            DEMO_PACKAGE,
            "--only",
            "nothing.example.com",
        ],
    );
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("'nothing.example.com'"),
        "{}",
        stderr(&o)
    );

    // A Front End server is a server of the procedure: planned alone, it gets its own steps.
    let o = sfbpatch(&[
        "plan",
        DEMO_TOPOLOGY,
        "--package",
        DEMO_PACKAGE,
        "--only",
        "fe11.berlin.demo.example",
        "--format",
        "json",
    ]);
    let v = json(&o);
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{v}");
    assert_eq!(servers[0]["fqdn"], "fe11.berlin.demo.example");
    assert_eq!(servers[0]["kind"], "front-end");
    let ids: Vec<&str> = servers[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| field(st, "id"))
        .collect();
    assert_eq!(ids, FRONT_END_STEPS);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[
            "topology",
            "generate",
            "--pools",
            "0",
            "--out",
            "never-written.xml",
        ][..],
        &["topology", "show", DEMO_TOPOLOGY, "--format", "yaml"],
        &["plan", DEMO_TOPOLOGY],
        &[
            "topology",
            "generate",
            "--pools",
            "-3",
            "--out",
            "never-written.xml",
        ],
    ] {
        let scratch = Scratch::new();
        let o = run_in(scratch.path(), args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
        assert!(
            !scratch.path().join("never-written.xml").exists(),
            "{args:?} wrote a file"
        );
    }
    let scratch = Scratch::new();
    let args = ["topology", "generate", "--pools", "0", "--out", "x.xml"];
    assert_bad_input(&run_in(scratch.path(), &args), "--pools must be at least 1");
}

// ---------------------------------------------------------------------------------------------
// topology generate

#[test]
fn generate_is_deterministic_and_reads_back() {
    let scratch = Scratch::new();
    let generate = |out: &str, seed: &str| {
        let args = [
            "topology", "generate", "--pools", "20", "--seed", seed, "--out", out,
        ];
        let o = run_in(scratch.path(), &args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), "", "a message, not data");
        assert_eq!(
            stderr(&o),
            format!("wrote {out} (20 pools, seed {seed}, Skype for Business Server 2019)\n")
        );
        std::fs::read(scratch.path().join(out)).expect("written")
    };
    let first = generate("a.xml", "7");
    let again = generate("b.xml", "7");
    let other = generate("c.xml", "8");
    assert!(first == again, "the same seed writes the same bytes");
    assert!(first != other, "another seed writes another topology");

    let o = run_in(
        scratch.path(),
        &["topology", "show", "a.xml", "--format", "json"],
    );
    let v = json(&o);
    let pools = v["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 20);
    let has = |key: &str, value: &str| pools.iter().any(|p| p[key] == value);
    for variant in ["configured", "configured-exclude-collocated", "local"] {
        assert!(
            has("database_update", variant),
            "seed 7 has a {variant} pool"
        );
    }
    assert!(has("edition", "standard") && has("edition", "enterprise"));
    assert!(
        pools.iter().any(|p| p["backend"]["always_on"] == true),
        "seed 7 has an AlwaysOn back end"
    );

    // What it writes also plans.
    let o = run_in(
        scratch.path(),
        &[
            "plan",
            "a.xml",
            "--package",
            "demo-package.toml",
            "--format",
            "json",
        ],
    );
    let plan = json(&o);
    assert!(plan["servers"].as_array().unwrap().len() >= 20);
    assert!(
        pools.iter().all(|p| p["product"] == "sfb-2019"),
        "2019 unless asked otherwise"
    );

    // --product 2015 writes the 2015 line, which a 2019 package may not patch.
    let args = [
        "topology",
        "generate",
        "--pools",
        "3",
        "--product",
        "2015",
        "--out",
        "old.xml",
    ];
    let o = run_in(scratch.path(), &args);
    assert_eq!(
        stderr(&o),
        "wrote old.xml (3 pools, seed 1, Skype for Business Server 2015)\n"
    );
    let text = std::fs::read_to_string(scratch.path().join("old.xml")).unwrap();
    assert!(text.contains("ServiceVersion=\"7\"") && !text.contains("ServiceVersion=\"8\""));
    let o = run_in(
        scratch.path(),
        &["plan", "old.xml", "--package", "demo-package.toml"],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("[SFB-P010]"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// Help, man page, completions

#[test]
fn help_snapshots() {
    for (name, args) in [
        ("help", &["--help"][..]),
        ("help_plan", &["plan", "--help"]),
        ("help_apply", &["apply", "--help"]),
    ] {
        let o = snapshot_run(name, args);
        assert_eq!(code(&o), 0);
        assert_eq!(stderr(&o), "");
    }
}

/// The subcommands `sfbpatch --help` lists.
fn subcommands() -> Vec<String> {
    let help = stdout(&sfbpatch(&["--help"]));
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap();
    let names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

#[test]
fn man_page_is_roff_and_names_every_subcommand() {
    let o = sfbpatch(&["man"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    let page = stdout(&o);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{}", &page[..80]);
    let header = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("a .TH header");
    assert!(header.starts_with(".TH sfbpatch 1 "), "{header}");
    assert!(page.contains("\n.SH NAME\nsfbpatch \\- "), "a NAME section");
    for name in subcommands() {
        assert!(
            page.contains(&format!("sfbpatch\\-{name}(1)")),
            "the man page mentions {name}"
        );
    }
}

#[test]
fn completions_for_bash_and_zsh() {
    for shell in ["bash", "zsh"] {
        let o = sfbpatch(&["completions", shell]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stderr(&o), "");
        let script = stdout(&o);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for name in subcommands() {
            assert!(script.contains(&name), "{shell} completes {name}");
        }
        assert!(
            script.contains("generate"),
            "{shell} completes subcommands of topology"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Colour and output conventions

/// A bad-input error with `NO_COLOR` set or not and extra arguments.
fn error_output(no_color: bool, extra: &[&str]) -> String {
    let mut cmd = command_in(&root());
    if !no_color {
        cmd.env_remove("NO_COLOR");
    }
    let o = cmd
        .args(["topology", "show", "no-such-topology.xml"])
        .args(extra)
        .output()
        .expect("sfbpatch runs");
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    stderr(&o)
}

#[test]
fn colour_only_when_asked_and_never_with_no_color() {
    let plain = "error: cannot read topology no-such-topology.xml: ";
    for (no_color, extra) in [
        (true, &[][..]),
        (true, &["--color", "auto"]),
        (true, &["--color", "never"]),
        (false, &["--color", "never"]),
        // Not a terminal: auto means no colour.
        (false, &[]),
    ] {
        let text = error_output(no_color, extra);
        assert!(
            !text.contains('\x1b'),
            "NO_COLOR={no_color} {extra:?}: {text:?}"
        );
        assert!(text.starts_with(plain), "{text:?}");
    }
    // An explicit --color always wins, as NO_COLOR's convention asks.
    for no_color in [false, true] {
        let text = error_output(no_color, &["--color", "always"]);
        assert!(
            text.starts_with("\x1b[1;31merror\x1b[0m: cannot read topology"),
            "NO_COLOR={no_color}: {text:?}"
        );
    }
}

#[test]
fn data_on_stdout_messages_on_stderr() {
    for args in [
        &[
            "plan",
            DEMO_TOPOLOGY,
            "--package",
            DEMO_PACKAGE,
            "--format",
            "json",
        ][..],
        &["topology", "show", DEMO_TOPOLOGY, "--format", "json"],
    ] {
        let o = sfbpatch(args);
        assert_eq!(stderr(&o), "", "{args:?}");
        let v = json(&o);
        // The plan's JSON is at schema version 2 (machine kinds, run_on, not applicable
        // steps); the topology's at 1.
        let version = if args[0] == "plan" { 2 } else { 1 };
        assert_eq!(v["schema_version"], version, "{args:?}");
        assert!(
            stdout(&o).ends_with("}\n"),
            "{args:?}: one document and a newline"
        );
    }
    // A pipe closed early is not an error.
    let mut child = command_in(&root())
        .args(["plan", DEMO_TOPOLOGY, "--package", DEMO_PACKAGE])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sfbpatch runs");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("waits");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

/// Free text from a topology (a site name, an upgrade domain) cannot drive the terminal: every
/// character that is not printable is shown escaped.
#[test]
fn topology_show_escapes_control_characters_from_free_text() {
    let scratch = Scratch::new();
    scratch.write(
        "esc.toml",
        "[[site]]\nname = \"Berlin\\u001b[31m red\"\n\n[[pool]]\nfqdn = \"pool.example.com\"\n\
         site = \"Berlin\\u001b[31m red\"\nmachines = [{ fqdn = \"fe1.example.com\", \
         upgrade_domain = \"UD\\u0007bell\" }, \"fe2.example.com\"]\nbackend = \"sql.example.com\"\n",
    );
    let o = run_in(scratch.path(), &["topology", "show", "esc.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with(
            "pool.example.com (site Berlin\\u{1b}[31m red, Enterprise Edition)\n  machine    \
             fe1.example.com (UD\\u{7}bell)\n"
        ),
        "{text}"
    );
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
}

/// `--help` names the variable the state store may come from, never its value (a PostgreSQL
/// URL may carry a password).
#[test]
fn help_never_prints_the_state_store_from_the_environment() {
    for cmd in ["apply", "resume", "status", "report", "unlock"] {
        let o = crate::common::bin()
            .args([cmd, "--help"])
            .env(
                "SFBPATCH_STATE",
                "postgres://sfbpatch:s3cret-pw@db.example.com/sfbpatch",
            )
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("SFBPATCH_STATE"), "{cmd}: {out}");
        assert!(
            !out.contains("s3cret-pw"),
            "{cmd} prints the password: {out}"
        );
    }
}

//! The script every template renders to for a sample server (a back end with collocated
//! stores on a named instance), and the database-update and verify variants of the others.

mod common;

use common::*;
use sfbpatch_plan::StepId;
use sfbpatch_remote::{Operation, TEMPLATES, script_for};

fn snapshot_name(template: &str, server: &str) -> String {
    format!(
        "{}__{}",
        template.replace('/', "_"),
        server.split('.').next().unwrap()
    )
}

#[test]
fn every_template_rendered_for_the_sample_server() {
    let plan = plan();
    let sample = server(&plan, SAMPLE_SERVER);
    let mut seen = Vec::new();
    for r in every_script(&plan)
        .into_iter()
        .filter(|r| r.server.fqdn == sample.fqdn)
    {
        insta::assert_snapshot!(
            snapshot_name(&r.script.template, SAMPLE_SERVER),
            r.script.text
        );
        seen.push(r.script.template);
    }
    // The steps only a Front End server has, and its verify (services and the pool's fabric),
    // rendered for a Front End server of the sample's pool.
    let on_sample = seen.clone();
    for r in every_script(&plan).into_iter().filter(|r| {
        r.server.fqdn.as_str() == SAMPLE_FRONT_END
            && (!on_sample.contains(&r.script.template) || r.step.id == StepId::Verify)
            && !r.op.is_server_wide()
    }) {
        insta::assert_snapshot!(
            snapshot_name(&r.script.template, SAMPLE_FRONT_END),
            r.script.text
        );
        seen.push(r.script.template);
    }
    seen.sort();
    seen.dedup();
    let mut all: Vec<String> = TEMPLATES.iter().map(|(n, _)| n.to_string()).collect();
    all.sort();
    assert_eq!(seen, all);
}

#[test]
fn database_variants_rendered() {
    let plan = plan();
    for fqdn in [
        "sql01.fabrikam.com",
        "se01.fabrikam.com",
        "sqlag01a.fabrikam.com",
        "sqlag01b.fabrikam.com",
    ] {
        let server = server(&plan, fqdn);
        for id in [StepId::UpdateDatabases, StepId::Verify] {
            let script =
                script_for(Operation::Execute, server, server.step(id), &plan.package).unwrap();
            // The template is the same for every server: only the bindings differ.
            let bindings = script.text.rsplit_once("\n}").unwrap().1;
            insta::assert_snapshot!(snapshot_name(&script.template, fqdn), bindings);
        }
    }
}

#[test]
fn the_longest_values_still_fit_on_a_command_line() {
    let mut package = package();
    package.installer = sfbpatch_plan::Installer::Path(format!("\\\\{}", "s".repeat(1022)));
    let plan = plan_with(package);
    let server = server(&plan, SAMPLE_SERVER);
    let mut step = server.step(StepId::StageUpdate).clone();
    let destination = format!("C:\\{}\\x.exe", "d".repeat(1000));
    step.action = sfbpatch_plan::Action::StageUpdate {
        source: plan.package.installer.clone(),
        sha256: plan.package.sha256.clone(),
        destination,
    };
    for op in [Operation::Execute, Operation::Probe] {
        let script = script_for(op, server, &step, &plan.package).unwrap();
        let length = script.command_line().len();
        assert!(length < sfbpatch_remote::MAX_COMMAND_LINE, "{length}");
    }
}

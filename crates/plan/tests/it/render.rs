//! Snapshots of the three renderings for each kind of back end.

use sfbpatch_plan::{Installer, PlanPolicy};
use sfbpatch_topology::StoreKind;

use crate::support::*;

#[test]
fn enterprise_back_end_without_collocated_stores() {
    let d = deployment(vec![ee("pool01.contoso.com", "sql01.contoso.com").build()]);
    check("ee_configured", &d, &package(), &PlanPolicy::default());
}

#[test]
fn enterprise_back_end_with_collocated_stores() {
    let d = deployment(vec![
        ee("pool02.contoso.com", "sql02.contoso.com")
            .instance("rtc")
            .site("Dublin")
            .collocated(&[StoreKind::Archiving, StoreKind::Monitoring])
            .build(),
    ]);
    let mut package = package();
    package.installer = Installer::Url(
        "https://download.example.com/sfb2019/SkypeServerUpdateInstaller.exe".into(),
    );
    package.schema_versions = [
        (StoreKind::User, "15.13.27".to_string()),
        (StoreKind::Monitoring, "10.13.2".to_string()),
    ]
    .into();
    check("ee_collocated", &d, &package, &PlanPolicy::default());
}

#[test]
fn standard_edition_server() {
    let d = deployment(vec![se("se01.contoso.com")]);
    check("standard_edition", &d, &package(), &PlanPolicy::default());
}

#[test]
fn always_on_with_two_nodes() {
    let d = deployment(vec![
        ee("pool03.contoso.com", "ag03.contoso.com")
            .instance("rtc")
            .always_on(&["sql03a.contoso.com", "sql03b.contoso.com"])
            .build(),
    ]);
    check("always_on", &d, &package(), &PlanPolicy::default());
}

#[test]
fn only_narrows_a_mixed_deployment() {
    let d = deployment(vec![
        ee("pool01.contoso.com", "sql01.contoso.com").build(),
        ee("pool03.contoso.com", "ag03.contoso.com")
            .always_on(&["sql03a.contoso.com", "sql03b.contoso.com"])
            .build(),
        se("se01.contoso.com"),
        se_in("se02.contoso.com", "Dublin"),
    ]);
    let plan = check(
        "only",
        &d,
        &package(),
        &only(&["se02.contoso.com", "SQL03A.contoso.com"]),
    );
    let servers: Vec<_> = plan.servers.iter().map(|s| s.fqdn.to_string()).collect();
    assert_eq!(servers, ["sql03a.contoso.com", "se02.contoso.com"]);
}

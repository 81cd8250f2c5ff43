//! The JSON contract: its shape, its schema, and that it reads back.

use serde_json::Value;
use sfbpatch_plan::json::{PLAN_SCHEMA, PlanJson, SCHEMA_VERSION, render_json};
use sfbpatch_plan::{PlanPolicy, StepId, plan};
use sfbpatch_topology::StoreKind;

use crate::support::*;

fn sample() -> sfbpatch_plan::Plan {
    let d = deployment(vec![
        ee("pool1.contoso.com", "ag1.contoso.com")
            .always_on(&["n1.contoso.com", "n2.contoso.com"])
            .collocated(&[StoreKind::Archiving])
            .build(),
        se("se1.contoso.com"),
    ]);
    plan(&d, &package(), &PlanPolicy::default()).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// The properties a schema object declares, sorted, and its required ones.
fn declared<'a>(schema: &'a Value, def: Option<&str>) -> (Vec<&'a str>, Vec<&'a str>) {
    let object = match def {
        Some(def) => &schema["$defs"][def],
        None => schema,
    };
    let mut props: Vec<&str> = object["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    props.sort_unstable();
    let mut required: Vec<&str> = object["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    (props, required)
}

#[test]
fn the_output_has_exactly_the_documented_fields() {
    let json: Value = serde_json::from_str(&render_json(&sample())).unwrap();
    assert_eq!(json["schema_version"], SCHEMA_VERSION);
    assert_eq!(keys(&json), ["package", "schema_version", "servers"]);
    assert_eq!(keys(&json["package"]), ["name", "sha256", "version"]);
    let server = &json["servers"][0];
    assert_eq!(
        keys(server),
        ["database_update", "fqdn", "kind", "pool", "steps"]
    );
    assert_eq!(keys(&server["steps"][0]), ["command", "id", "in_outage"]);
    assert_eq!(server["kind"], "front-end");
    assert_eq!(server["database_update"], "configured-exclude-collocated");
    // The AlwaysOn nodes: the first defers, the last updates from a Front End server.
    let n1 = &json["servers"][2];
    assert_eq!(
        keys(n1),
        ["after", "database_update", "fqdn", "kind", "pool", "steps"]
    );
    assert_eq!(n1["kind"], "back-end");
    assert_eq!(n1["steps"][8]["id"], "update-databases");
    assert_eq!(n1["steps"][8]["command"], Value::Null);
    assert_eq!(
        keys(&n1["steps"][3]),
        ["command", "id", "in_outage", "not_applicable"]
    );
    let n2 = &json["servers"][3];
    assert_eq!(
        keys(&n2["steps"][8]),
        ["command", "id", "in_outage", "run_on"]
    );
    assert_eq!(n2["steps"][8]["run_on"], "pool1-fe02.contoso.com");
    assert_eq!(json["servers"][4]["kind"], "standard-edition");
    assert_eq!(json["servers"][4]["database_update"], "local");
}

#[test]
fn the_schema_declares_the_same_fields() {
    let schema: Value = serde_json::from_str(PLAN_SCHEMA).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(
        schema["properties"]["schema_version"]["const"],
        SCHEMA_VERSION
    );
    let json: Value = serde_json::from_str(&render_json(&sample())).unwrap();
    for (def, value, optional) in [
        (None, &json, &[][..]),
        (Some("package"), &json["package"], &[]),
        (
            Some("server"),
            &json["servers"][0],
            &["after", "upgrade_domain"][..],
        ),
        (
            Some("step"),
            &json["servers"][0]["steps"][0],
            &["not_applicable", "run_on"],
        ),
    ] {
        let (props, required) = declared(&schema, def);
        let mut all = keys(value);
        all.extend_from_slice(optional);
        all.sort_unstable();
        assert_eq!(props, all, "{def:?}");
        assert_eq!(required, keys(value), "{def:?}");
    }
    let ids: Vec<&str> = schema["$defs"]["step"]["properties"]["id"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = StepId::ALL.iter().map(|id| id.as_str()).collect();
    assert_eq!(ids, expected);
    let kinds: Vec<&str> = schema["$defs"]["server"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = sfbpatch_plan::ServerKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(kinds, expected);
}

#[test]
fn the_json_reads_back() {
    let plan = sample();
    let text = render_json(&plan);
    let back: PlanJson = serde_json::from_str(&text).unwrap();
    assert_eq!(back, PlanJson::from(&plan));
}

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
        ["database_update", "fqdn", "pool", "role", "steps"]
    );
    assert_eq!(keys(&server["steps"][0]), ["command", "id", "in_outage"]);
    assert_eq!(server["role"], "enterprise-backend");
    assert_eq!(server["database_update"], "configured-exclude-collocated");
    assert_eq!(server["steps"][8]["id"], "update-databases");
    assert_eq!(server["steps"][8]["command"], Value::Null);
    assert_eq!(json["servers"][2]["role"], "standard-edition");
    assert_eq!(json["servers"][2]["database_update"], "local");
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
    for (def, value) in [
        (None, &json),
        (Some("package"), &json["package"]),
        (Some("server"), &json["servers"][0]),
        (Some("step"), &json["servers"][0]["steps"][0]),
    ] {
        let (props, required) = declared(&schema, def);
        assert_eq!(props, keys(value), "{def:?}");
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
    let prefix = schema["$defs"]["server"]["properties"]["steps"]["prefixItems"]
        .as_array()
        .unwrap();
    for (item, id) in prefix.iter().zip(StepId::ALL) {
        assert_eq!(item["properties"]["id"]["const"], id.as_str());
        assert_eq!(item["properties"]["in_outage"]["const"], id.in_outage());
    }
}

#[test]
fn the_json_reads_back() {
    let plan = sample();
    let text = render_json(&plan);
    let back: PlanJson = serde_json::from_str(&text).unwrap();
    assert_eq!(back, PlanJson::from(&plan));
}

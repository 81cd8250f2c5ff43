//! The plan as JSON: a stable contract for other tools, kept apart from the internal types.
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "package": { "name": "...", "version": "7.0.2046.553", "sha256": "..." },
//!   "servers": [
//!     {
//!       "fqdn": "be01.contoso.com",
//!       "pool": "pool01.contoso.com",
//!       "kind": "back-end",
//!       "database_update": "configured",
//!       "after": ["fe01.contoso.com"],
//!       "steps": [ { "id": "update-databases", "command": "...", "in_outage": true,
//!                    "run_on": "fe01.contoso.com" } ]
//!     }
//!   ]
//! }
//! ```
//!
//! `kind` is `standard-edition`, `front-end`, `back-end` or `store`; `database_update` is
//! `configured`, `configured-exclude-collocated` or `local`; `steps` holds the kind's procedure
//! in order. `command` is `null` for a step that does nothing on that server
//! (`update-databases` on every machine of a multi-machine back end but the last, or a step
//! with `not_applicable`, which gives the reason). `run_on` names the machine a step runs on
//! when it is not the server itself; `after` lists the servers that must finish first. The JSON Schema is
//! `crates/plan/schema/plan.schema.json`.
//!
//! Compatibility: fields may be added without changing [`SCHEMA_VERSION`]; removing or
//! renaming a field, or changing what one means, increments it. Readers should ignore fields
//! they do not know.

use serde::{Deserialize, Serialize};
use sfbpatch_topology::DatabaseUpdate;

use crate::model::{Plan, ServerKind};

/// The version of this contract, written as `schema_version`.
pub const SCHEMA_VERSION: u32 = 2;

/// The JSON Schema (draft 2020-12) of [`PlanJson`].
pub const PLAN_SCHEMA: &str = include_str!("../schema/plan.schema.json");

/// The plan, as other tools read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanJson {
    pub schema_version: u32,
    pub package: PackageJson,
    pub servers: Vec<ServerJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageJson {
    pub name: String,
    /// The build, like `7.0.2046.553`.
    pub version: String,
    /// Lower-case hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerJson {
    pub fqdn: String,
    pub pool: String,
    pub kind: ServerKind,
    pub database_update: DatabaseUpdateJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    pub steps: Vec<StepJson>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseUpdateJson {
    Configured,
    ConfiguredExcludeCollocated,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepJson {
    /// The step id, like `stop-cs-services`.
    pub id: String,
    /// The exact PowerShell, statements one per line; `null` when the step does nothing on
    /// this server.
    pub command: Option<String>,
    pub in_outage: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
}

impl From<&Plan> for PlanJson {
    fn from(plan: &Plan) -> Self {
        PlanJson {
            schema_version: SCHEMA_VERSION,
            package: PackageJson {
                name: plan.package.name.clone(),
                version: plan.package.version.to_string(),
                sha256: plan.package.sha256.clone(),
            },
            servers: plan
                .servers
                .iter()
                .map(|server| ServerJson {
                    fqdn: server.fqdn.to_string(),
                    pool: server.pool.to_string(),
                    kind: server.kind,
                    database_update: match server.database_update {
                        DatabaseUpdate::Configured => DatabaseUpdateJson::Configured,
                        DatabaseUpdate::ConfiguredExcludeCollocated => {
                            DatabaseUpdateJson::ConfiguredExcludeCollocated
                        }
                        DatabaseUpdate::Local => DatabaseUpdateJson::Local,
                    },
                    upgrade_domain: server.upgrade_domain.clone(),
                    after: server.after.iter().map(ToString::to_string).collect(),
                    steps: server
                        .steps
                        .iter()
                        .map(|step| StepJson {
                            id: step.id.as_str().to_string(),
                            command: step.command.clone(),
                            in_outage: step.in_outage,
                            run_on: step.run_on.as_ref().map(ToString::to_string),
                            not_applicable: step.not_applicable.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// `serde_json::to_string_pretty(&PlanJson::from(plan))`.
pub fn render_json(plan: &Plan) -> String {
    serde_json::to_string_pretty(&PlanJson::from(plan))
        .expect("plain data with string keys always serializes")
}

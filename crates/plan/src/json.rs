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
//!       "role": "enterprise-backend",
//!       "database_update": "configured",
//!       "steps": [ { "id": "check-admin-role", "command": "...", "in_outage": false } ]
//!     }
//!   ]
//! }
//! ```
//!
//! `role` is `enterprise-backend` or `standard-edition`; `database_update` is `configured`,
//! `configured-exclude-collocated` or `local`; `steps` holds the eleven step ids in order, and
//! `command` is `null` for a step that does nothing on that server (`update-databases` on every
//! machine of a multi-machine back end but the last). The JSON Schema is
//! `crates/plan/schema/plan.schema.json`.
//!
//! Compatibility: fields may be added without changing [`SCHEMA_VERSION`]; removing or
//! renaming a field, or changing what one means, increments it. Readers should ignore fields
//! they do not know.

use serde::{Deserialize, Serialize};
use sfbpatch_topology::DatabaseUpdate;

use crate::model::{Plan, ServerRole};

/// The version of this contract, written as `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

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
    pub role: RoleJson,
    pub database_update: DatabaseUpdateJson,
    pub steps: Vec<StepJson>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleJson {
    EnterpriseBackend,
    StandardEdition,
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
                    role: match server.role {
                        ServerRole::EnterpriseBackend => RoleJson::EnterpriseBackend,
                        ServerRole::StandardEdition => RoleJson::StandardEdition,
                    },
                    database_update: match server.database_update {
                        DatabaseUpdate::Configured => DatabaseUpdateJson::Configured,
                        DatabaseUpdate::ConfiguredExcludeCollocated => {
                            DatabaseUpdateJson::ConfiguredExcludeCollocated
                        }
                        DatabaseUpdate::Local => DatabaseUpdateJson::Local,
                    },
                    steps: server
                        .steps
                        .iter()
                        .map(|step| StepJson {
                            id: step.id.as_str().to_string(),
                            command: step.command.clone(),
                            in_outage: step.in_outage,
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

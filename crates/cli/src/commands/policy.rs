//! `sfbpatch policy check`.

use serde::Serialize;

use crate::cli::{DataFormat, PolicyCommand, RunFormat, RunOptions};
use crate::exit::{CmdResult, Exit};
use crate::{output, policy};

/// The JSON contract of `policy check` (`docs/schema/policy-check.schema.json`): the effective
/// rollout settings, with the outage budget in seconds too (the file's key is in minutes).
#[derive(Debug, Serialize)]
struct PolicyCheckJson<'a> {
    schema_version: u32,
    #[serde(flatten)]
    rollout: &'a policy::Rollout,
    outage_budget_seconds: f64,
}

pub fn run(cmd: PolicyCommand) -> CmdResult {
    match cmd {
        PolicyCommand::Check { file, format } => {
            let parsed = policy::load(&file)?;
            let rollout = policy::rollout(&parsed, &no_flags(), &file.display().to_string())?;
            match format {
                DataFormat::Json => output::json(&PolicyCheckJson {
                    schema_version: 1,
                    rollout: &rollout,
                    outage_budget_seconds: rollout.outage_budget_minutes * 60.0,
                })?,
                DataFormat::Text => output::data(&rollout.render_text())?,
            }
            Ok(Exit::Success)
        }
    }
}

/// Flags that override nothing.
fn no_flags() -> RunOptions {
    RunOptions {
        policy: None,
        store_outage_limit: 300,
        lease_ttl: 20,
        controller_name: None,
        outage_budget: None,
        accept_resiliency: false,
        max_parallel: None,
        max_parallel_per_site: None,
        max_failures: None,
        max_failure_percent: None,
        continue_on_failure: false,
        waves: None,
        pause_after_canary: false,
        window: None,
        timezone: None,
        order: None,
        front_end_batch: None,
        format: RunFormat::Text,
    }
}

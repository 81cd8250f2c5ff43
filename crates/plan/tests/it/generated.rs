//! Generated topologies, end to end through the real readers: every one reads, derives and
//! plans, with the procedure's invariants intact.

use proptest::prelude::*;
use sfbpatch_plan::{Action, PlanPolicy, ServerKind, StepId, plan};

use crate::support;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn generated_topologies_read_derive_and_plan(pools in 1usize..40, seed in any::<u64>()) {
        let text = sfbpatch_topology::generate(pools, seed);
        let deployment = sfbpatch_topology::load(&text, "generated.xml")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(deployment.pools.len(), pools);
        let package = support::package();
        let plan = plan(&deployment, &package, &PlanPolicy::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!plan.servers.is_empty());
        let mut real_updates = std::collections::BTreeMap::<String, usize>::new();
        for server in &plan.servers {
            let ids: Vec<StepId> = server.steps.iter().map(|s| s.id).collect();
            prop_assert_eq!(&ids[..], server.kind.procedure());
            // The outage window is one run of consecutive steps.
            let window: Vec<usize> = (0..server.steps.len()).filter(|&i| server.steps[i].in_outage).collect();
            if let (Some(first), Some(last)) = (window.first(), window.last()) {
                prop_assert_eq!(last - first + 1, window.len());
            }
            let Some(db) = server.find_step(StepId::UpdateDatabases) else {
                prop_assert_eq!(server.kind, ServerKind::FrontEnd);
                continue;
            };
            if !matches!(db.action, Action::DatabasesUpdatedBy { .. }) {
                *real_updates.entry(server.sql_server_fqdn.key()).or_default() += 1;
                prop_assert!(db.command.as_deref().unwrap().starts_with("Install-CsDatabase -Update "));
            }
        }
        // Exactly one real database update per back end.
        for (backend, n) in real_updates {
            prop_assert_eq!(n, 1, "back end {}", backend);
        }
    }
}

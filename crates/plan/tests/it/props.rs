//! Random small deployments always plan, with the procedure's invariants.

use std::collections::HashMap;

use proptest::prelude::*;
use sfbpatch_plan::{Action, PlanPolicy, ServerKind, StepId, plan};
use sfbpatch_topology::{Pool, StoreKind};

use crate::support::*;

/// What one generated pool is.
#[derive(Debug, Clone)]
enum Kind {
    Standard,
    /// An Enterprise Edition pool on back end number `backend` (pools may share one), with
    /// `nodes` machines (1 = a single SQL Server), collocated stores or not.
    Enterprise {
        backend: usize,
        nodes: usize,
        collocated: bool,
    },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Standard),
        (0usize..4, 1usize..4, any::<bool>()).prop_map(|(backend, nodes, collocated)| {
            Kind::Enterprise {
                backend,
                nodes,
                collocated,
            }
        }),
    ]
}

fn pools(kinds: &[Kind]) -> Vec<Pool> {
    // A back end keeps the node count of its first pool.
    let mut node_counts: HashMap<usize, usize> = HashMap::new();
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| match kind {
            Kind::Standard => se(&format!("se{i}.contoso.com")),
            Kind::Enterprise {
                backend,
                nodes,
                collocated,
            } => {
                let nodes = *node_counts.entry(*backend).or_insert(*nodes);
                let names: Vec<String> = (0..nodes)
                    .map(|n| format!("sql{backend}n{n}.contoso.com"))
                    .collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let pool = ee(
                    &format!("pool{i}.contoso.com"),
                    &format!("sql{backend}.contoso.com"),
                );
                let pool = if nodes > 1 {
                    pool.always_on(&names)
                } else {
                    pool.nodes(&names)
                };
                let pool = if *collocated {
                    pool.collocated(&[StoreKind::Monitoring])
                } else {
                    pool
                };
                pool.build()
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn generated_deployments_plan_with_the_procedures_invariants(
        kinds in prop::collection::vec(kind(), 1..8)
    ) {
        let d = deployment(pools(&kinds));
        let plan = plan(&d, &package(), &PlanPolicy::default()).unwrap();
        prop_assert!(!plan.servers.is_empty());

        // Each kind's procedure, in order; the outage window: stop through start of the
        // services on a Standard Edition server, failover through failback on a Front End
        // server of a pool of two or more, the database update on a back end.
        for server in &plan.servers {
            let ids: Vec<StepId> = server.steps.iter().map(|s| s.id).collect();
            prop_assert_eq!(&ids[..], server.kind.procedure());
            let window: Vec<StepId> = server.steps.iter().filter(|s| s.in_outage).map(|s| s.id).collect();
            let expected: Vec<StepId> = match server.kind {
                ServerKind::StandardEdition => StepId::SEED[2..10].to_vec(),
                ServerKind::FrontEnd if server.outage_costs_users() => StepId::FRONT_END[4..11].to_vec(),
                ServerKind::FrontEnd => StepId::FRONT_END[3..12].to_vec(),
                ServerKind::BackEnd | ServerKind::Store => {
                    let db = server.step(StepId::UpdateDatabases);
                    if matches!(db.action, Action::DatabasesUpdatedBy { .. }) { vec![] } else { vec![StepId::UpdateDatabases] }
                }
            };
            prop_assert_eq!(window, expected, "{}", server.fqdn);
            for step in &server.steps {
                prop_assert_eq!(step.not_applicable.is_some() && step.command.is_some(), false);
            }
        }

        // Each machine at most once.
        let mut seen = std::collections::HashSet::new();
        for server in &plan.servers {
            prop_assert!(seen.insert(server.fqdn.key()), "{} twice", server.fqdn);
        }

        // Exactly one real update-databases per back end, on its last machine in plan order;
        // the others point at it.
        let mut real: HashMap<String, Vec<usize>> = HashMap::new();
        let mut members: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, server) in plan.servers.iter().enumerate() {
            let backend = match server.kind {
                ServerKind::BackEnd | ServerKind::Store => server.sql_server_fqdn.key(),
                ServerKind::StandardEdition => format!("se:{}", server.fqdn.key()),
                ServerKind::FrontEnd => continue,
            };
            members.entry(backend.clone()).or_default().push(i);
            let step = server.step(StepId::UpdateDatabases);
            match &step.action {
                Action::DatabasesUpdatedBy { .. } => prop_assert!(step.command.is_none()),
                _ => {
                    prop_assert!(step.command.as_deref().unwrap().starts_with("Install-CsDatabase -Update "));
                    real.entry(backend).or_default().push(i);
                }
            }
        }
        for (backend, indices) in &members {
            let last = *indices.last().unwrap();
            prop_assert_eq!(real.get(backend), Some(&vec![last]), "back end {}", backend);
            prop_assert_eq!(indices.iter().max(), Some(&last));
            prop_assert_eq!(indices.len(), last - indices[0] + 1, "consecutive");
            for &i in &indices[..indices.len() - 1] {
                prop_assert_eq!(
                    &plan.servers[i].step(StepId::UpdateDatabases).action,
                    &Action::DatabasesUpdatedBy { server: plan.servers[last].fqdn.clone() }
                );
            }
        }

        // Deterministic.
        prop_assert_eq!(&plan, &sfbpatch_plan::plan(&d, &package(), &PlanPolicy::default()).unwrap());
    }
}

proptest! {
    #[test]
    fn manifests_never_panic(text in "(?s).{0,200}") {
        let _ = sfbpatch_plan::parse_manifest(&text, "m.toml");
    }

    #[test]
    fn manifest_like_text_never_panics(
        lines in prop::collection::vec(
            prop_oneof![
                Just("name = \"x\"".to_string()),
                Just("version = \"7.0.2046.553\"".to_string()),
                Just("installer = \"a.exe\"".to_string()),
                Just("[schema_versions]".to_string()),
                "[a-z_]{1,12} = \"[ -~]{0,70}\"",
                "[a-z_.]{1,12} = [0-9.]{1,8}",
            ],
            0..8,
        )
    ) {
        let text = lines.join("\n");
        if let Err(e) = sfbpatch_plan::parse_manifest(&text, "m.toml") {
            // One line per mistake, each naming the file and ending with its code.
            let message = e.to_string();
            let lines: Vec<&str> = message.lines().collect();
            prop_assert_eq!(lines.len(), 1 + e.more.len(), "{}", message);
            for (line, error) in lines.iter().zip(std::iter::once(&e).chain(&e.more)) {
                prop_assert!(line.starts_with("m.toml"), "{}", message);
                prop_assert!(line.ends_with(&format!("[{}]", error.code())), "{}", message);
            }
        }
    }
}

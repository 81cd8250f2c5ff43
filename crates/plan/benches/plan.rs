//! Times `plan()` and the renderings on synthetic deployments built by hand: a quarter each
//! Standard Edition servers, Enterprise Edition pools without and with collocated stores, and
//! Enterprise Edition pools on two-node AlwaysOn back ends.
//!
//! `cargo bench -p sfbpatch-plan` (add `-- 20000` to time other sizes too).

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use sfbpatch_plan::json::render_json;
use sfbpatch_plan::{Installer, Package, PlanPolicy, plan, render_powershell, render_text};
use sfbpatch_topology::{
    Backend, DatabaseUpdate, Deployment, Edition, Fqdn, Machine, Pool, SourceFormat,
    SqlInstanceName, StoreKind,
};

const RUNS: usize = 7;

fn fqdn(s: &str) -> Fqdn {
    Fqdn::parse(s).expect("generated names are valid")
}

fn machine(s: &str) -> Machine {
    Machine {
        fqdn: fqdn(s),
        upgrade_domain: None,
        fault_domain: None,
        sfb_components: false,
    }
}

fn deployment(pools: usize) -> Deployment {
    let pools = (0..pools)
        .map(|i| {
            let site = format!("Site{}", i % 7);
            if i % 4 == 0 {
                let name = format!("se{i}.contoso.com");
                return Pool {
                    fqdn: fqdn(&name),
                    site,
                    edition: Edition::Standard,
                    machines: vec![machine(&name)],
                    backend: Backend {
                        sql_server_fqdn: fqdn(&name),
                        sql_instance: SqlInstanceName::parse("RTC").unwrap(),
                        always_on: false,
                        always_on_primary: None,
                        machines: vec![machine(&name)],
                        stores: [StoreKind::User, StoreKind::Application].into(),
                        collocated_stores: BTreeSet::new(),
                        mirroring: None,
                    },
                    database_update: DatabaseUpdate::Local,
                    product: None,
                    paired_with: None,
                    uses_stores_on: vec![fqdn(&name)],
                };
            }
            let collocated: BTreeSet<StoreKind> = if i % 4 == 2 {
                [StoreKind::Archiving, StoreKind::Monitoring].into()
            } else {
                BTreeSet::new()
            };
            let always_on = i % 4 == 3;
            let sql = if always_on {
                format!("ag{i}.contoso.com")
            } else {
                format!("sql{i}.contoso.com")
            };
            let nodes = if always_on {
                vec![
                    machine(&format!("sql{i}a.contoso.com")),
                    machine(&format!("sql{i}b.contoso.com")),
                ]
            } else {
                vec![machine(&sql)]
            };
            let mut stores: BTreeSet<StoreKind> = [StoreKind::User, StoreKind::Application].into();
            stores.extend(&collocated);
            Pool {
                fqdn: fqdn(&format!("pool{i}.contoso.com")),
                site,
                edition: Edition::Enterprise,
                machines: (1..=4)
                    .map(|n| machine(&format!("pool{i}-fe{n}.contoso.com")))
                    .collect(),
                backend: Backend {
                    sql_server_fqdn: fqdn(&sql),
                    sql_instance: SqlInstanceName::parse("rtc").unwrap(),
                    always_on,
                    always_on_primary: always_on.then(|| nodes[0].fqdn.clone()),
                    machines: nodes,
                    stores,
                    collocated_stores: collocated.clone(),
                    mirroring: None,
                },
                database_update: if collocated.is_empty() {
                    DatabaseUpdate::Configured
                } else {
                    DatabaseUpdate::ConfiguredExcludeCollocated
                },
                product: None,
                paired_with: None,
                uses_stores_on: Vec::new(),
            }
        })
        .collect();
    Deployment {
        format: SourceFormat::Inventory,
        pools,
        sql_instances: Vec::new(),
    }
}

fn package() -> Package {
    Package {
        name: "Skype for Business Server 2019 cumulative update".to_string(),
        version: "7.0.2046.553".parse().unwrap(),
        installer: Installer::Path("SkypeServerUpdateInstaller.exe".to_string()),
        sha256: "3f2a9c0d5b8e4f1a6c7d9e0b2a4c6e8f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d".to_string(),
        schema_versions: BTreeMap::new(),
        product: None,
    }
}

/// The median and the fastest of `RUNS` timings of `f`.
fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = black_box(f());
        times.push(start.elapsed());
        last = Some(out);
    }
    times.sort_unstable();
    (times[RUNS / 2], times[0], last.expect("RUNS > 0"))
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut sizes = vec![1_250, 2_500, 5_000];
    sizes.extend(
        std::env::args()
            .skip(1)
            .filter_map(|a| a.parse::<usize>().ok()),
    );
    let package = package();
    let policy = PlanPolicy::default();
    println!("median (fastest) of {RUNS} runs");
    for pools in sizes {
        let d = deployment(pools);
        let (plan_med, plan_min, p) = time(|| plan(&d, &package, &policy).expect("plans"));
        let (json_med, json_min, json) = time(|| render_json(&p));
        let (text_med, text_min, text) = time(|| render_text(&p));
        let (ps_med, ps_min, ps) = time(|| render_powershell(&p));
        let (both_med, both_min, _) = time(|| {
            let p = plan(&d, &package, &policy).expect("plans");
            render_json(&p).len()
        });
        println!("{pools:>6} pools, {:>6} servers:", p.servers.len());
        println!("  plan()             {} ({})", ms(plan_med), ms(plan_min));
        println!(
            "  render_json        {} ({})  {:>6.1} MB",
            ms(json_med),
            ms(json_min),
            json.len() as f64 / 1e6
        );
        println!(
            "  render_text        {} ({})  {:>6.1} MB",
            ms(text_med),
            ms(text_min),
            text.len() as f64 / 1e6
        );
        println!(
            "  render_powershell  {} ({})  {:>6.1} MB",
            ms(ps_med),
            ms(ps_min),
            ps.len() as f64 / 1e6
        );
        println!("  plan() + JSON      {} ({})", ms(both_med), ms(both_min));
    }
}

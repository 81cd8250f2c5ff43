//! What the benchmarks share: the demo package with its stand-in installer, generated fleets,
//! peak memory.

use std::path::Path;

use sfbpatch_engine::Identity;
use sfbpatch_plan::{Installer, Package, Plan, PlanPolicy};
use sfbpatch_topology::Deployment;

/// Peak resident memory of this process, in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The demo package, its installer written into `dir`.
pub fn package(dir: &Path) -> Package {
    let installer = dir.join("SkypeServerUpdateInstaller.exe");
    std::fs::write(
        &installer,
        include_bytes!("../../assets/SkypeServerUpdateInstaller.exe"),
    )
    .unwrap();
    let mut package =
        sfbpatch_plan::parse_manifest(include_str!("../../assets/demo-package.toml"), "pkg")
            .unwrap();
    package.installer = Installer::Path(installer.display().to_string());
    package
}

/// A generated deployment planned for at least `servers` servers, cut after whole back ends.
pub fn fleet(servers: usize, seed: u64, package: &Package) -> (String, Deployment, Plan) {
    let mut pools = servers;
    loop {
        let text = sfbpatch_topology::generate(pools, seed);
        let deployment = sfbpatch_topology::load(&text, "generated").unwrap();
        let mut plan = sfbpatch_plan::plan(&deployment, package, &PlanPolicy::default()).unwrap();
        if plan.servers.len() >= servers {
            let cut = plan.servers[servers - 1].sql_server_fqdn.clone();
            let mut n = servers;
            while n < plan.servers.len() && plan.servers[n].sql_server_fqdn == cut {
                n += 1;
            }
            plan.servers.truncate(n);
            return (text, deployment, plan);
        }
        pools += pools / 2;
    }
}

pub fn identity() -> Identity {
    Identity {
        holder: "bench".into(),
        host: "localhost".into(),
        pid: std::process::id(),
    }
}

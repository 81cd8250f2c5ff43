//! `sfbpatch demo`: a bundled two-site deployment (Enterprise pools with and without collocated
//! stores, an AlwaysOn back end, two Standard Edition servers) patched end to end in a lab.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use sfbpatch_engine::{Engine, RunPolicy, RunSpec, TargetSpec};
use sfbpatch_lab::LabOptions;

use crate::cli::DemoArgs;
use crate::exit::{CmdResult, Failure};
use crate::{output, progress};

use super::apply::{SystemClock, identity, open_store};

const TOPOLOGY: &str = include_str!("../../assets/demo-topology.xml");
const PACKAGE: &str = include_str!("../../assets/demo-package.toml");
const INSTALLER: &[u8] = include_bytes!("../../assets/SkypeServerUpdateInstaller.exe");

pub fn run(args: DemoArgs, color: bool) -> CmdResult {
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        return Err(Failure::bad_input(anyhow!("--speed must be 0 or positive")));
    }
    let temp;
    let root: PathBuf = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::bad_input(anyhow!("cannot create {}: {e}", dir.display())))?;
            dir.clone()
        }
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, Failure> {
        let path = root.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::internal(anyhow!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    };
    let topology_path = write("demo-topology.xml", TOPOLOGY.as_bytes())?;
    let package_path = write("demo-package.toml", PACKAGE.as_bytes())?;
    write("SkypeServerUpdateInstaller.exe", INSTALLER)?;

    let deployment = sfbpatch_topology::load(TOPOLOGY, "demo-topology.xml")
        .map_err(|e| Failure::internal(anyhow!("the bundled topology does not read: {e}")))?;
    let package = crate::input::package(&package_path)?;
    let plan = super::plan::make_plan(&deployment, package, &[], &[], false)?;
    let lab_dir = root.join("lab");
    let lab = sfbpatch_lab::init(
        &lab_dir,
        &deployment,
        &LabOptions {
            speed: args.speed,
            epoch_unix_ms: sfbpatch_engine::Clock::now(&sfbpatch_engine::SystemClock) as i64,
            ..LabOptions::default()
        },
    )
    .map_err(Failure::internal)?;
    output::note(&format!(
        "demo: patching {} server(s) in {} pool(s) of a simulated deployment in {} (speed {}x)",
        plan.servers.len(),
        deployment.pools.len(),
        root.display(),
        args.speed
    ));
    let mut store = open_store(&root.join("sfbpatch.db").display().to_string())?;
    let spec = RunSpec {
        topology_origin: topology_path.display().to_string(),
        topology_snapshot: TOPOLOGY.to_string(),
        operator: lab.operator().to_string(),
        plan,
        // Two back ends out at once, never two nodes of the AlwaysOn group.
        policy: RunPolicy {
            max_parallel: 2,
            ..RunPolicy::default()
        },
        target: TargetSpec::Lab {
            dir: lab_dir.display().to_string(),
        },
    };
    let outcome = {
        let target = lab.target();
        let clock = lab.clock();
        let mut observer = progress::observer(args.format, color);
        let mut engine = Engine {
            store: &mut *store,
            target: &target,
            clock: &clock,
            wall: &SystemClock,
            observer: &mut *observer,
            identity: identity(None),
            cancel: Some(super::apply::interrupt_flag()),
        };
        engine.start(spec)?
    };
    let exit = super::apply::finish(&outcome, &lab, args.format, store.as_ref());
    if args.keep.is_some() {
        output::note(&format!(
            "lab and state kept in {}: try `sfbpatch lab show {}` and `sfbpatch status --state {}`",
            root.display(),
            lab_dir.display(),
            root.join("sfbpatch.db").display()
        ));
    }
    exit
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, Failure> {
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let path = base.join(format!("sfbpatch-demo-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Failure::internal(anyhow!(
                        "cannot create a directory in {}: {e}",
                        base.display()
                    )));
                }
            }
        }
        Err(Failure::internal(anyhow!(
            "cannot create a temporary directory in {}",
            base.display()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new(&self.0));
    }
}

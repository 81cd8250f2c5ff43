//! `sfbpatch plan`.

use sfbpatch_plan::{Plan, PlanPolicy};
use sfbpatch_topology::Deployment;

use crate::cli::{PlanArgs, PlanFormat};
use crate::exit::{CmdResult, Exit, Failure};
use crate::{input, output};

pub fn run(args: PlanArgs) -> CmdResult {
    let (_, deployment) = input::topology(&args.topology)?;
    let package = input::package(&args.package)?;
    let plan = make_plan(
        &deployment,
        package,
        &args.only,
        &args.planning.sfb_components_on,
        args.planning.reset_missing_replicas,
    )?;
    if args.format == PlanFormat::Powershell {
        sfbpatch_plan::check_exportable(&plan.package).map_err(Failure::bad_input)?;
    }
    input::check_installer(&plan.package)?;
    match args.format {
        PlanFormat::Text => output::data(&sfbpatch_plan::render_text(&plan))?,
        PlanFormat::Powershell => output::data(&sfbpatch_plan::render_powershell(&plan))?,
        PlanFormat::Json => output::data(&sfbpatch_plan::json::render_json(&plan))?,
    }
    Ok(Exit::Success)
}

/// The plan for `deployment`; `sfb_components` names the SQL Server machines known to have
/// the Management Shell (the flags', and a lab's).
pub fn make_plan(
    deployment: &Deployment,
    package: sfbpatch_plan::Package,
    only: &[String],
    sfb_components: &[String],
    reset_missing_replicas: bool,
) -> Result<Plan, Failure> {
    let policy = PlanPolicy {
        only: only.to_vec(),
        sfb_components: sfb_components.to_vec(),
        reset_missing_replicas,
        ..PlanPolicy::default()
    };
    let plan = sfbpatch_plan::plan(deployment, &package, &policy).map_err(Failure::bad_input)?;
    sfbpatch_plan::check_product_line(deployment, &plan).map_err(Failure::bad_input)?;
    Ok(plan)
}

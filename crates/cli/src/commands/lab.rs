//! `sfbpatch lab init|show`.

use anyhow::anyhow;
use sfbpatch_lab::{Lab, LabOptions};

use crate::cli::{DataFormat, LabCommand};
use crate::exit::{CmdResult, Exit, Failure};
use crate::{input, output};

pub fn run(cmd: LabCommand) -> CmdResult {
    match cmd {
        LabCommand::Init {
            dir,
            topology,
            build,
            speed,
            faults,
            operator,
        } => {
            let (_, deployment) = input::topology(&topology)?;
            let build = build
                .parse()
                .map_err(|e: String| Failure::bad_input(anyhow!("--build: {e}")))?;
            if !(speed.is_finite() && speed >= 0.0) {
                return Err(Failure::bad_input(anyhow!(
                    "--speed must be 0 or a positive number of simulated seconds per real second"
                )));
            }
            let faults = match faults {
                Some(path) => {
                    let text = input::read_text(&path, "faults file")?;
                    sfbpatch_lab::parse_faults(&text, &path.display().to_string())
                        .map_err(Failure::bad_input)?
                }
                None => Vec::new(),
            };
            let options = LabOptions {
                build,
                speed,
                operator,
                faults,
            };
            let lab =
                sfbpatch_lab::init(&dir, &deployment, &options).map_err(Failure::bad_input)?;
            output::note(&format!(
                "created a lab of {} server(s) in {}",
                lab.show().map_err(Failure::internal)?.servers.len(),
                dir.display()
            ));
            Ok(Exit::Success)
        }
        LabCommand::Show { dir, format } => {
            let lab = Lab::open(&dir).map_err(Failure::bad_input)?;
            let snapshot = lab.show().map_err(Failure::internal)?;
            match format {
                DataFormat::Json => output::json(&snapshot)?,
                DataFormat::Text => output::data(&sfbpatch_lab::render_text(&snapshot))?,
            }
            Ok(Exit::Success)
        }
    }
}

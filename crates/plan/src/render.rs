//! Human-facing renderings of a plan: text for review, and PowerShell scripts an administrator
//! can read and run by hand. The machine-facing one is [`crate::json`].

use std::fmt::Write as _;

use crate::command::{ps_quote, start_installer};
use crate::model::{Action, Installer, Package, Plan, PlannedStep, ServerKind, ServerPlan, StepId};
use crate::text::clean;

const OUTAGE_NOTE: &str = "[outage] marks each server's outage window: stop-cs-services through start-cs-services \
     on a Standard Edition server, failover through failback on a Front End server, update-databases on a back end \
     or store SQL Server. If a back end stays unavailable for 30 minutes or more, its pool's users go into \
     resiliency mode; a Front End server taken out after failover costs users nothing.";

/// The plan as text: the package, then per server a header
/// `<fqdn> (pool <pool>, <role>, database update: <variant>)` and the numbered steps with their
/// commands, `[outage]` marking the steps inside the outage window.
pub fn render_text(plan: &Plan) -> String {
    let package = &plan.package;
    let mut s = String::new();
    let _ = writeln!(s, "Package: {} {}", clean(&package.name), package.version);
    let _ = writeln!(
        s,
        "Installer: {} ({})",
        clean(package.installer.location()),
        source_kind(&package.installer)
    );
    let _ = writeln!(s, "SHA-256: {}", clean(&package.sha256));
    let of = |kind: ServerKind| plan.servers.iter().filter(|sp| sp.kind == kind).count();
    let _ = writeln!(
        s,
        "Servers: {} ({}, {}, {}, {})",
        plan.servers.len(),
        count(of(ServerKind::FrontEnd), "Front End server"),
        count(of(ServerKind::BackEnd), "back-end SQL Server machine"),
        count(of(ServerKind::Store), "store SQL Server machine"),
        count(of(ServerKind::StandardEdition), "Standard Edition server")
    );
    let _ = writeln!(s, "{OUTAGE_NOTE}");

    for server in &plan.servers {
        let _ = writeln!(
            s,
            "\n{} (pool {}, {}, database update: {})",
            server.fqdn,
            server.pool,
            server.kind.as_str(),
            server.database_update.as_str()
        );
        if !server.after.is_empty() {
            let names: Vec<&str> = server.after.iter().map(|f| f.as_str()).collect();
            let _ = writeln!(s, "  after: {}", names.join(", "));
        }
        let _ = writeln!(
            s,
            "  site {}; back end {}, {}",
            clean(&server.site),
            server.sql_server_fqdn,
            instance(server)
        );
        for (i, step) in server.steps.iter().enumerate() {
            let (starts, ends) = outage_edges(&server.steps, i);
            if starts {
                s.push_str("  -- outage window starts --\n");
            }
            let _ = writeln!(
                s,
                "  {:>2}. {}{}{}",
                i + 1,
                if step.in_outage { "[outage] " } else { "" },
                step.id,
                step.run_on
                    .as_ref()
                    .map(|r| format!(" (run on {r})"))
                    .unwrap_or_default()
            );
            if let Some(reason) = &step.not_applicable {
                let _ = writeln!(s, "        (not applicable: {})", clean(reason));
                continue;
            }
            match (&step.command, &step.action) {
                (Some(command), _) => {
                    for line in command.lines() {
                        let _ = writeln!(s, "        {line}");
                    }
                }
                (None, Action::DatabasesUpdatedBy { server: by }) => {
                    let _ = writeln!(s, "        (not run here: {})", deferred_reason(server, by));
                }
                (None, _) => s.push_str("        (nothing to run)\n"),
            }
            if ends {
                s.push_str("  -- outage window ends --\n");
            }
        }
    }
    s
}

/// One PowerShell script per server (see [`render_powershell_server`]), one after the other.
/// Each script refuses to run on any other server than its own, so running the whole text on
/// one server updates that server only, and only if its script comes first.
pub fn render_powershell(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# sfbpatch: {}, one per server, for {} {}.",
        count(plan.servers.len(), "script"),
        clean(&plan.package.name),
        plan.package.version
    );
    s.push_str(
        "# Run each on its own server; a script stops at once when run on another server.\n",
    );
    for server in &plan.servers {
        s.push('\n');
        s.push_str(&render_powershell_server(&plan.package, server));
    }
    s
}

/// A commented, reviewable script that carries out `server`'s procedure by hand, stopping at
/// the first failure.
pub fn render_powershell_server(package: &Package, server: &ServerPlan) -> String {
    const RULE: &str =
        "# ==============================================================================\n";
    let fqdn = server.fqdn.as_str();
    let total = server.steps.len();
    let mut s = String::new();
    s.push_str(RULE);
    let _ = writeln!(s, "# sfbpatch update procedure for {fqdn}");
    s.push_str("#\n");
    let _ = writeln!(s, "# Server:          {fqdn} ({})", server.kind.as_str());
    let _ = writeln!(
        s,
        "# Pool:            {}, site {}",
        server.pool,
        clean(&server.site)
    );
    let _ = writeln!(
        s,
        "# Back end:        {}, {}",
        server.sql_server_fqdn,
        instance(server)
    );
    let _ = writeln!(s, "# Database update: {}", server.database_update.as_str());
    let _ = writeln!(
        s,
        "# Package:         {} {}",
        clean(&package.name),
        package.version
    );
    let _ = writeln!(
        s,
        "# Installer:       {}",
        clean(package.installer.location())
    );
    let _ = writeln!(
        s,
        "#                  (step 2 {})",
        match &package.installer {
            Installer::Server(_) =>
                "copies it from there: the account running this script must be able to read it",
            Installer::Url(_) => "downloads it from there: this server must reach the URL",
            // Refused by `check_exportable` before rendering; said plainly if it gets here.
            Installer::Path(_) =>
                "cannot reach it: this is a file on the controller, not on the server",
        }
    );
    let _ = writeln!(s, "# SHA-256:         {}", clean(&package.sha256));
    s.push_str(
        "#\n\
         # Run on this server only, in an elevated Windows PowerShell window, not in the\n\
         # Skype for Business Server Management Shell: step 5 closes every shell that has\n\
         # the Skype for Business module loaded, because the installer replaces its files.\n\
         # The script stops at the first failure.\n\
         # Steps marked \"outage window\" are the outage window: if a back end stays\n\
         # unavailable for 30 minutes or more, the pool's users go into resiliency mode.\n",
    );
    s.push_str(RULE);
    s.push_str("#Requires -RunAsAdministrator\n");
    s.push_str("$ErrorActionPreference = 'Stop'\n\n");
    s.push_str("$computer = Get-CimInstance -ClassName Win32_ComputerSystem\n");
    let _ = writeln!(
        s,
        "if (('{{0}}.{{1}}' -f $computer.DNSHostName, $computer.Domain) -ne {q}) {{ throw ('This script is for {{0}}: run it there.' -f {q}) }}",
        q = ps_quote(fqdn)
    );
    s.push_str(
        "if (Get-Module -Name SkypeForBusiness, Lync) { throw 'The Skype for Business module is loaded in this session: run the script from a new Windows PowerShell window.' }\n",
    );

    for (i, step) in server.steps.iter().enumerate() {
        let (starts, ends) = outage_edges(&server.steps, i);
        let window = match (step.in_outage, starts, ends) {
            (false, _, _) => "",
            (true, true, _) => " (outage window starts)",
            (true, false, true) => " (outage window ends)",
            (true, false, false) => " (outage window)",
        };
        let label = format!("Step {}/{total} {}", i + 1, step.id);
        let _ = writeln!(s, "\n# {label}{window}");
        if let Some(reason) = &step.not_applicable {
            let _ = writeln!(s, "# Not applicable: {}.", clean(reason));
            let _ = writeln!(
                s,
                "Write-Host {}",
                ps_quote(&format!("==> {label}: not applicable"))
            );
            continue;
        }
        if let Some(host) = &step.run_on {
            let _ = writeln!(
                s,
                "# Runs on {host}, not here: run these lines there, in an elevated Windows PowerShell window."
            );
            let _ = writeln!(
                s,
                "Write-Host {}",
                ps_quote(&format!("==> {label}: run on {host}"))
            );
            if let Some(command) = &step.command {
                for line in command.lines() {
                    let _ = writeln!(s, "# {line}");
                }
            }
            continue;
        }
        let progress = match step.command {
            Some(_) => format!("==> {label}"),
            None => format!("==> {label}: not run on this server"),
        };
        let _ = writeln!(s, "Write-Host {}", ps_quote(&progress));
        let failed = |what: &str| {
            format!(
                "if ($LASTEXITCODE -ne 0) {{ throw ('{label} failed: {what} exited with {{0}}' -f $LASTEXITCODE) }}\n"
            )
        };
        match (&step.action, &step.command) {
            (Action::DatabasesUpdatedBy { server: by }, _) => {
                let _ = writeln!(s, "# Not run here: {}.", deferred_reason(server, by));
            }
            (Action::InstallUpdate { path }, Some(_)) => {
                // Asked in a child process, so that this session does not load the module the
                // installer replaces; a server already on the build is not installed again.
                let build = ps_quote(&package.version.to_string());
                s.push_str(
                    "$installed = powershell.exe -NoProfile -NonInteractive -Command 'Import-Module -Name SkypeForBusiness; [string](Get-CsServerPatchVersion | ForEach-Object { [version][string]$_.Version } | Sort-Object -Descending | Select-Object -First 1)' | Select-Object -Last 1\n",
                );
                let _ = writeln!(
                    s,
                    "if ($LASTEXITCODE -eq 0 -and $installed -and [version]$installed -ge [version]{build}) {{ Write-Host ('Build {{0}} is installed already.' -f $installed) }} else {{"
                );
                let _ = writeln!(s, "    {}", start_installer(path));
                let _ = writeln!(
                    s,
                    "    if ($installer.ExitCode -eq 3010) {{ Write-Warning 'The update is installed and Windows must restart (exit code 3010): restart this server, then run steps {} to {total} by hand.'; exit 3010 }}",
                    i + 2
                );
                let _ = writeln!(
                    s,
                    "    if ($installer.ExitCode -ne 0) {{ throw ('{label} failed: the installer exited with {{0}}' -f $installer.ExitCode) }}"
                );
                s.push_str("}\n");
            }
            (_, Some(command)) if step.id == StepId::StopCsServices => {
                s.push_str(
                    "# In a child process, so that this session does not load the Skype for\n\
                     # Business module before the installer runs.\n",
                );
                let _ = writeln!(
                    s,
                    "powershell.exe -NoProfile -NonInteractive -Command {}",
                    ps_quote(command)
                );
                s.push_str(&failed("powershell.exe"));
            }
            (Action::StopW3svc | Action::StartW3svc, Some(command)) => {
                // `net stop` on a stopped service (and `net start` on a running one) exits 2:
                // act only when the service is not already as the step leaves it, so that the
                // script can be run again after a failure.
                let (wanted, already) = match step.action {
                    Action::StopW3svc => ("Stopped", "W3SVC is already stopped."),
                    _ => ("Running", "W3SVC is already running."),
                };
                let _ = writeln!(
                    s,
                    "if ((Get-Service -Name W3SVC).Status -eq '{wanted}') {{ Write-Host '{already}' }} else {{"
                );
                let _ = writeln!(s, "    {command}");
                let _ = write!(s, "    {}", failed(command));
                s.push_str("}\n");
            }
            (Action::StageUpdate { destination, .. }, Some(command)) => {
                // Already staged with the package's hash and extracted: nothing to do again.
                let dest = ps_quote(destination);
                let _ = writeln!(
                    s,
                    "if ((Test-Path -LiteralPath {dest} -PathType Leaf) -and (Get-FileHash -LiteralPath {dest} -Algorithm SHA256).Hash -eq {} -and (Test-Path -LiteralPath {} -PathType Container)) {{",
                    ps_quote(&package.sha256),
                    ps_quote(&crate::command::extract_dir(destination))
                );
                let _ = writeln!(
                    s,
                    "    Write-Host ('{{0}} is already staged and extracted.' -f {dest})"
                );
                s.push_str("} else {\n");
                for line in command.lines() {
                    let _ = writeln!(s, "    {line}");
                }
                s.push_str("}\n");
            }
            (_, Some(command)) => {
                let _ = writeln!(s, "{command}");
            }
            (_, None) => s.push_str("# Nothing to run on this server.\n"),
        }
    }
    let _ = writeln!(
        s,
        "\nWrite-Host ('{{0}}: all {total} steps done, build {{1}}.' -f {}, {})",
        ps_quote(fqdn),
        ps_quote(&package.version.to_string())
    );
    s
}

/// Whether the outage window starts before, and ends after, step `i`.
fn outage_edges(steps: &[PlannedStep], i: usize) -> (bool, bool) {
    let inside = |j: Option<usize>| j.and_then(|j| steps.get(j)).is_some_and(|s| s.in_outage);
    let here = steps[i].in_outage;
    (
        here && !inside(i.checked_sub(1)),
        here && !inside(Some(i + 1)),
    )
}

fn deferred_reason(server: &ServerPlan, by: &sfbpatch_topology::Fqdn) -> String {
    format!(
        "the databases on {} are updated once, by {}, after every machine of the back end has the update",
        server.sql_server_fqdn, by
    )
}

/// `1 server`, `2 servers`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn instance(server: &ServerPlan) -> String {
    if server.sql_instance.is_default() {
        "default instance".to_string()
    } else {
        format!("instance {}", server.sql_instance.as_str())
    }
}

/// How the installer reaches each server, for people.
fn source_kind(installer: &Installer) -> &'static str {
    match installer {
        Installer::Path(_) => "a file on this machine, uploaded to each server over SSH",
        Installer::Server(_) => "a path each server reads, used as written",
        Installer::Url(_) => "downloaded by each server",
    }
}

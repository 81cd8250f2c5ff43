//! What each kind of machine has (SPEC.md section 5), and what a step needs of it. A step sent
//! to a machine without its object fails there as it would on Windows; the lab counts such
//! commands per machine (`refused_commands`), so tests can prove none was sent.

use sfbpatch_engine::MachineFacts;
use sfbpatch_plan::Action;

use crate::db::Server;

/// What a machine lacks for a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// A Windows service the step names (W3SVC) is not installed.
    Service,
    /// The Skype for Business module (Management Shell) is not installed.
    Module,
    /// No Skype for Business Server component is installed for the installer to update.
    Components,
}

/// What `server` lacks to carry out `action`, if anything.
pub(crate) fn lacks(server: &Server, action: &Action) -> Option<Missing> {
    match action {
        Action::CheckAdminRole | Action::StageUpdate { .. } | Action::CloseManagementShells => None,
        Action::StopW3svc | Action::StartW3svc if !server.w3svc_present => Some(Missing::Service),
        Action::StopW3svc | Action::StartW3svc => None,
        Action::InstallUpdate { .. } if !server.shell_present => Some(Missing::Components),
        Action::InstallUpdate { .. } | Action::DatabasesUpdatedBy { .. } => None,
        Action::StopCsServices
        | Action::StartCsServices
        | Action::UpdateConfiguredDatabases { .. }
        | Action::UpdateLocalDatabases
        | Action::Verify { .. }
        | Action::CheckFabricState { .. }
        | Action::Failover { .. }
        | Action::Failback { .. }
            if !server.shell_present =>
        {
            Some(Missing::Module)
        }
        _ => None,
    }
}

/// The command word an action runs, for messages.
pub(crate) fn command_word(action: &Action) -> &'static str {
    match action {
        Action::CheckAdminRole => "whoami /groups",
        Action::CheckFabricState { .. } => "Get-CsPoolFabricState",
        Action::Failover { .. } => "Invoke-CsComputerFailOver",
        Action::Failback { .. } => "Invoke-CsComputerFailBack",
        Action::StageUpdate { .. } => "Copy-Item",
        Action::StopCsServices => "Stop-CsWindowsService",
        Action::StopW3svc => "net stop w3svc",
        Action::CloseManagementShells => "Stop-Process",
        Action::InstallUpdate { .. } => "SkypeServerUpdateInstaller.exe",
        Action::StartW3svc => "net start w3svc",
        Action::UpdateConfiguredDatabases { .. } | Action::UpdateLocalDatabases => {
            "Install-CsDatabase"
        }
        Action::DatabasesUpdatedBy { .. } => "(nothing)",
        Action::StartCsServices => "Start-CsWindowsService",
        Action::Verify { .. } => "Test-CsDatabase",
    }
}

/// The pre-flight probe's reading of a machine.
pub(crate) fn facts(server: &Server) -> MachineFacts {
    MachineFacts {
        services: server.services.iter().map(|s| s.name.clone()).collect(),
        services_running: server.services.iter().filter(|s| s.running).count(),
        w3svc: server.w3svc_present,
        management_shell: server.shell_present,
        sql_server: matches!(
            server.kind,
            sfbpatch_plan::ServerKind::BackEnd | sfbpatch_plan::ServerKind::Store
        ) || server.kind == sfbpatch_plan::ServerKind::StandardEdition,
        build: server.shell_present.then_some(server.installed),
        reboot_pending: server.reboot_pending,
        in_service: server.consistent(),
    }
}

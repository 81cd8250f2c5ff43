//! The fixed facts of the simulated world: durations, service names, schema versions.

use sfbpatch_engine::Millis;
use sfbpatch_plan::{Build, StepId};
use sfbpatch_topology::StoreKind;

/// One simulated minute.
pub const MINUTE: Millis = 60_000;

/// How long a restart of a server takes.
pub const REBOOT_DURATION: Millis = 5 * MINUTE;

/// Starting W3SVC during recovery.
pub const RECOVER_W3SVC_DURATION: Millis = MINUTE / 2;

/// Starting (or restarting) the Skype for Business services during recovery.
pub const RECOVER_SERVICES_DURATION: Millis = 3 * MINUTE;

/// An installer that meets another installation in progress gives up (exit 1618) after this.
pub const INSTALLER_BUSY_DURATION: Millis = MINUTE / 10;

/// `Install-CsDatabase` gives up connecting to a SQL Server that is down after this (the
/// SQL Server client's connection timeout).
pub const SQL_CONNECT_TIMEOUT: Millis = MINUTE / 4;

/// A back end unavailable for longer than this puts the pool's users in resiliency mode.
pub const RESILIENCY_AFTER: Millis = 30 * MINUTE;

/// The initial build of a new lab's servers.
pub const DEFAULT_BUILD: Build = Build([7, 0, 2046, 0]);

/// The default acting account.
pub const DEFAULT_OPERATOR: &str = "LAB\\sfbadmin";

/// The lab's accounts and the administrative group each belongs to.
pub const ACCOUNTS: [(&str, &str); 2] = [
    ("LAB\\sfbadmin", "CsAdministrator"),
    ("LAB\\rtcadmin", "RTCUniversalServerAdmins"),
];

/// How long a step takes in simulated time, unless a `duration_minutes` fault says otherwise.
/// `update-databases` on a server whose databases another node updates takes no time.
pub fn step_duration(step: StepId) -> Millis {
    match step {
        StepId::CheckAdminRole => MINUTE / 10,
        StepId::StageUpdate => 4 * MINUTE,
        StepId::StopCsServices => 2 * MINUTE,
        StepId::StopW3svc => MINUTE / 2,
        StepId::CloseManagementShells => MINUTE / 5,
        StepId::InstallUpdate => 12 * MINUTE,
        StepId::StopCsServicesGac => MINUTE,
        StepId::StartW3svc => MINUTE / 2,
        StepId::UpdateDatabases => 6 * MINUTE,
        StepId::StartCsServices => 3 * MINUTE,
        StepId::Verify => MINUTE,
        StepId::CheckFabricState => MINUTE / 2,
        StepId::Failover => 5 * MINUTE,
        StepId::Failback => 5 * MINUTE,
    }
}

/// `Reset-CsPoolRegistrarState -ResetType QuorumLossRecovery` before a check can go on.
pub const RESET_REGISTRAR_STATE_DURATION: Millis = 5 * MINUTE;

/// The Skype for Business services every patched server runs (SPEC.md section 3), in the order
/// the lab lists them. `MASTER` follows where the server's back end holds the Central
/// Management store.
pub const CS_SERVICES: [&str; 15] = [
    "RTCSRV",
    "RTCCLSAGT",
    "RTCHA",
    "RTCMEDSRV",
    "RTCATS",
    "RTCASMCU",
    "RTCAVMCU",
    "RTCIMMCU",
    "RTCDATAMCU",
    "RTCCAA",
    "RTCCAS",
    "RTCRGS",
    "RTCXMPPTGW",
    "REPLICA",
    "FTA",
];

/// The Central Management service, on servers whose back end holds the Central Management store.
pub const CMS_SERVICE: &str = "MASTER";

/// The schema version a store has at a build when no package says otherwise:
/// `<store base>.<build's third number>.<build's fourth number>`, with the bases
/// user 15, application 6, central-management 5, archiving 8, monitoring 12,
/// persistent-chat 3, persistent-chat-compliance 4. So every build change is a schema change.
pub fn derived_schema_version(store: StoreKind, build: Build) -> String {
    let base = match store {
        StoreKind::User => 15,
        StoreKind::Application => 6,
        StoreKind::CentralManagement => 5,
        StoreKind::Archiving => 8,
        StoreKind::Monitoring => 12,
        StoreKind::PersistentChat => 3,
        StoreKind::PersistentChatCompliance => 4,
    };
    let [_, _, third, fourth] = build.0;
    format!("{base}.{third}.{fourth}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_versions() {
        assert_eq!(
            derived_schema_version(StoreKind::User, Build([7, 0, 2046, 553])),
            "15.2046.553"
        );
        assert_eq!(
            derived_schema_version(StoreKind::Monitoring, DEFAULT_BUILD),
            "12.2046.0"
        );
    }

    #[test]
    fn one_standard_edition_outage_takes_25_minutes() {
        let outage: Millis = StepId::SEED
            .into_iter()
            .filter(|s| (StepId::StopCsServices..=StepId::StartCsServices).contains(s))
            .map(step_duration)
            .sum();
        assert_eq!(outage, 25 * MINUTE + MINUTE / 5);
    }
}

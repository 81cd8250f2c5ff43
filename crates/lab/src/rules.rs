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

/// How long `step` takes on `server` (its lower-case FQDN) in a lab with duration variance
/// (`LabOptions::variance`, the seed): the table's time ([`step_duration`]) times the server's
/// speed times the step's own jitter. A stand-in for what a real server's times depend on
/// (docs/lab.md): each server draws a speed between 0.85 and 1.35 (disks, CPU, the load it
/// carries), one server in twelve is slow (1.8 to 2.6: a busy SAN, antivirus scanning the
/// installer's files) and every step varies by up to a tenth either way. Deterministic: the same
/// seed, server and step always give the same time.
pub fn varied_step_duration(seed: u64, server: &str, step: StepId) -> Millis {
    let base = step_duration(step);
    let factor = server_speed(seed, server) * step_jitter(seed, server, step);
    // Whole seconds, as a transcript would show them.
    let seconds = ((base as f64 * factor) / 1000.0).round().max(1.0);
    seconds as Millis * 1000
}

/// The factor a server's steps take longer (or shorter) than the table's in a lab with
/// variance `seed`.
pub fn server_speed(seed: u64, server: &str) -> f64 {
    let mut h = Draw::new(seed, server, "speed");
    if h.below(12) == 0 {
        1.8 + 0.8 * h.unit()
    } else {
        0.85 + 0.5 * h.unit()
    }
}

fn step_jitter(seed: u64, server: &str, step: StepId) -> f64 {
    0.9 + 0.2 * Draw::new(seed, server, step.as_str()).unit()
}

/// A seeded stream of draws: FNV-1a over the seed and names, then SplitMix64.
struct Draw(u64);

impl Draw {
    fn new(seed: u64, server: &str, what: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed
            .to_le_bytes()
            .iter()
            .chain(server.as_bytes())
            .chain(&[0])
            .chain(what.as_bytes())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Draw(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
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
    fn varied_durations_repeat_and_stay_in_their_range() {
        let servers: Vec<String> = (0..240).map(|i| format!("fe{i}.example.com")).collect();
        let mut slow = 0;
        for s in &servers {
            let speed = server_speed(42, s);
            assert!(
                (0.85..1.35).contains(&speed) || (1.8..2.6).contains(&speed),
                "{s}: {speed}"
            );
            slow += usize::from(speed >= 1.8);
            for step in StepId::ALL {
                let d = varied_step_duration(42, s, step);
                assert_eq!(d, varied_step_duration(42, s, step));
                assert_eq!(d % 1000, 0);
                let base = step_duration(step) as f64;
                assert!(
                    d as f64 >= (base * 0.85 * 0.9 - 500.0).max(1000.0),
                    "{s} {step}: {d}"
                );
                assert!(d as f64 <= base * 2.6 * 1.1 + 500.0, "{s} {step}: {d}");
            }
        }
        // About one in twelve is slow.
        assert!((10..=32).contains(&slow), "{slow} slow servers of 240");
        // Another seed draws another world.
        assert!(
            servers
                .iter()
                .any(|s| server_speed(42, s) != server_speed(43, s))
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

//! What to do about a failed or skipped server: what its exit code means, where the update
//! installer's logs lie on the server, and the command that patches that one server again.
//!
//! Sources (docs/report.md): Windows Installer's exit codes,
//! <https://learn.microsoft.com/en-us/windows/win32/msi/error-codes>; Windows' system error
//! codes (5, 112), <https://learn.microsoft.com/en-us/windows/win32/debug/system-error-codes--0-499->;
//! Windows Installer's own log (`MSI*.LOG` in `%TEMP%` when its Logging policy is set),
//! <https://learn.microsoft.com/en-us/windows/win32/msi/logging>; the update installer's logs
//! kept in the folder it runs from,
//! <https://tsoorad.blogspot.com/2016/02/sfb-patchupgrade-outline.html>.

use sfbpatch_engine::{RunRecord, RunState, ServerState, TargetSpec};
use sfbpatch_plan::{Action, ServerPlan, StepId};

use crate::model::{ExitCodeHint, Hint};

/// One exit code the update installer (SkypeServerUpdateInstaller.exe, a Windows Installer
/// patch) or the steps around it return: the code, its Windows name, what it means, and what
/// to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode {
    pub code: i32,
    pub name: &'static str,
    pub meaning: &'static str,
    pub action: &'static str,
}

/// The glossary of the codes an administrator meets when a cumulative update fails.
pub const EXIT_CODES: &[ExitCode] = &[
    ExitCode {
        code: 5,
        name: "ERROR_ACCESS_DENIED",
        meaning: "access is denied",
        action: "the account sfbpatch logs on with lacks a right on the server: it must be a \
                 local administrator there (and a member of RTCUniversalServerAdmins); check \
                 that nothing (a policy, an antivirus) blocks the staging folder",
    },
    ExitCode {
        code: 112,
        name: "ERROR_DISK_FULL",
        meaning: "there is not enough space on the disk",
        action: "free space on the drive of the staging folder and on the drive Skype for \
                 Business Server is installed on, then try again",
    },
    ExitCode {
        code: 1601,
        name: "ERROR_INSTALL_SERVICE_FAILURE",
        meaning: "the Windows Installer service could not be reached",
        action: "check that the Windows Installer service (msiserver) starts on the server, \
                 then try again",
    },
    ExitCode {
        code: 1602,
        name: "ERROR_INSTALL_USEREXIT",
        meaning: "the installation was cancelled",
        action: "someone or something cancelled the installer: find out who, then try again",
    },
    ExitCode {
        code: 1603,
        name: "ERROR_INSTALL_FAILURE",
        meaning: "a fatal error occurred during the installation",
        action: "Windows Installer rolls a failed installation back, so the server should still \
                 run its old build (check with Get-CsServerPatchVersion); read the installer's \
                 log for the first error (in a Windows Installer log, the lines before \
                 \"Return value 3\"): files held open, too little disk space, a restart pending; \
                 fix it, then try again",
    },
    ExitCode {
        code: 1605,
        name: "ERROR_UNKNOWN_PRODUCT",
        meaning: "the action is only valid for products that are installed",
        action: "the update found none of the components it updates: check what the server \
                 runs (Get-CsServerPatchVersion) and that the package is for its product line",
    },
    ExitCode {
        code: 1612,
        name: "ERROR_INSTALL_SOURCE_ABSENT",
        meaning: "the installation source for the product is not available",
        action: "Windows Installer needs the product's original source (its cached package in \
                 C:\\Windows\\Installer or the installation media): make it available, then try \
                 again",
    },
    ExitCode {
        code: 1618,
        name: "ERROR_INSTALL_ALREADY_RUNNING",
        meaning: "another installation is already in progress",
        action: "another installer runs on the server (msiexec.exe, Windows Update, an earlier \
                 SkypeServerUpdateInstaller.exe): wait until it has ended (Get-Process msiexec), \
                 never start a second one, then try again",
    },
    ExitCode {
        code: 1619,
        name: "ERROR_INSTALL_PACKAGE_OPEN_FAILED",
        meaning: "the installation package could not be opened",
        action: "the staged installer is damaged or cannot be read: stage it again (its SHA-256 \
                 must match the manifest), then try again",
    },
    ExitCode {
        code: 1625,
        name: "ERROR_INSTALL_PACKAGE_REJECTED",
        meaning: "the installation is forbidden by system policy",
        action: "a Group Policy forbids installing on the server: ask its owner",
    },
    ExitCode {
        code: 1638,
        name: "ERROR_PRODUCT_VERSION",
        meaning: "another version of the product is already installed",
        action: "a component runs another version than the update expects: compare \
                 Get-CsServerPatchVersion with the package's build",
    },
    ExitCode {
        code: 1641,
        name: "ERROR_SUCCESS_REBOOT_INITIATED",
        meaning: "the installation succeeded and the installer started a restart",
        action: "wait until the server answers again after its restart, then try again: the \
                 pre-flight finds the new build and the run finishes the remaining steps",
    },
    ExitCode {
        code: 1642,
        name: "ERROR_PATCH_TARGET_NOT_FOUND",
        meaning: "the update cannot be installed: what it updates is missing, or it is for \
                  another version",
        action: "check the server's product line and build against the package's",
    },
    ExitCode {
        code: 3010,
        name: "ERROR_SUCCESS_REBOOT_REQUIRED",
        meaning: "the installation succeeded; a restart is required to complete it",
        action: "restart the server, then try again (the pre-flight refuses a server with a \
                 restart pending)",
    },
];

/// The glossary entry of `code`, if it has one.
pub fn exit_code(code: i32) -> Option<&'static ExitCode> {
    EXIT_CODES.iter().find(|e| e.code == code)
}

/// What to do next about a server that failed at `step` (or was skipped) with `exit_code`. The
/// installer's logs are worth reading only when the installer is what failed.
pub(crate) fn hint(
    run: &RunRecord,
    plan: &ServerPlan,
    state: ServerState,
    step: Option<StepId>,
    exit_code: Option<i32>,
) -> Hint {
    let installer_step = step == Some(StepId::InstallUpdate);
    let exit = exit_code.and_then(self::exit_code).map(|e| {
        // Windows Installer's codes mean what they say when the installer returned them;
        // another step (a PowerShell script) only borrowed the number.
        let borrowed = e.code >= 1600 && !matches!(step, Some(StepId::InstallUpdate) | None);
        match step.filter(|_| borrowed) {
            Some(s) => ExitCodeHint {
                code: e.code,
                name: e.name.to_string(),
                meaning: format!(
                    "{} in Windows Installer's terms; here {s} returned it, not the installer",
                    e.meaning
                ),
                action: format!("{s}'s output tells what went wrong: fix that, then try again"),
            },
            None => ExitCodeHint {
                code: e.code,
                name: e.name.to_string(),
                meaning: e.meaning.to_string(),
                action: e.action.to_string(),
            },
        }
    });
    let logs = (state == ServerState::Failed && installer_step)
        .then(|| installer_folder(plan))
        .flatten()
        .map(|folder| {
            let mut text = format!(
                "on {server}, SkypeServerUpdateInstaller.exe writes its logs in the folder it \
                 runs from: {folder}; Windows Installer's own logs (MSI*.LOG, when its Logging \
                 policy is set) are in %TEMP% of the account that ran it ({operator})",
                server = plan.fqdn,
                operator = run.spec.operator,
            );
            if matches!(run.spec.target, TargetSpec::Lab { .. }) {
                text.push_str("; a lab run writes no such logs");
            }
            text
        });
    Hint {
        exit_code: exit,
        logs,
        retry: if state == ServerState::Skipped {
            format!(
                "when another server's failure skipped {server}, retrying that server (`sfbpatch \
                 retry` names it) tries this one again with it; when the pre-flight refused it, \
                 fix what the reason names, then `sfbpatch apply {topology} --package MANIFEST \
                 --only {server}` with the run's target and --state (MANIFEST: the manifest of \
                 build {build})",
                server = shell_word(plan.fqdn.as_str()),
                topology = shell_word(&run.spec.topology_origin),
                build = run.spec.plan.package.version,
            )
        } else {
            retry(run, plan)
        },
    }
}

/// The folder the staged installer runs from, as the plan names it.
fn installer_folder(plan: &ServerPlan) -> Option<String> {
    let path = plan.steps.iter().find_map(|st| match &st.action {
        Action::InstallUpdate { path } => Some(path.as_str()),
        _ => None,
    })?;
    let folder = path.rfind('\\').map_or(path, |i| &path[..=i]);
    Some(folder.to_string())
}

/// The commands that patch this one failed server again, and what to do first when the run
/// has not ended.
fn retry(run: &RunRecord, plan: &ServerPlan) -> String {
    let server = shell_word(plan.fqdn.as_str());
    let commands = format!(
        "`sfbpatch retry {server} --run {id} --state STATE`, then `sfbpatch resume --run {id} \
         --state STATE` (STATE: the state store this run used); the resume probes \
         {server} first and runs only what is not done",
        id = run.id
    );
    match run.state {
        RunState::Succeeded | RunState::Failed | RunState::Interrupted => {
            format!("once the cause is fixed: {commands}")
        }
        RunState::AwaitingApproval => format!(
            "run {id} awaits approval of its canary wave (`sfbpatch approve {id}`); once the \
             cause is fixed: {commands}",
            id = run.id
        ),
        RunState::Running => format!(
            "run {id} is still running: once it has stopped and the cause is fixed, {commands}",
            id = run.id
        ),
    }
}

/// `word`, single-quoted for a POSIX shell when it holds anything but plain path characters.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_glossary_has_each_code_once_and_the_usual_ones() {
        for (i, e) in EXIT_CODES.iter().enumerate() {
            assert!(
                EXIT_CODES[i + 1..].iter().all(|o| o.code != e.code),
                "{} twice",
                e.code
            );
        }
        for code in [5, 112, 1603, 1605, 1618, 1638, 1641, 3010] {
            assert!(exit_code(code).is_some(), "{code}");
        }
        assert_eq!(exit_code(1603).unwrap().name, "ERROR_INSTALL_FAILURE");
        assert_eq!(exit_code(1).map(|e| e.code), None);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("demo-topology.xml"), "demo-topology.xml");
        assert_eq!(shell_word("/tmp/a b/lab"), "'/tmp/a b/lab'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}

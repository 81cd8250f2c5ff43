//! The exact PowerShell each step runs, rendered from its [`Action`].
//!
//! Every string inserted into a command is single-quoted with [`ps_quote`], which doubles the
//! characters PowerShell reads as single quotes, so no value can end the string early. Values
//! that are not quoted (the SQL Server FQDN of `Install-CsDatabase`, as Microsoft documents
//! the command) are [`Fqdn`](sfbpatch_topology::Fqdn)s: letters, digits, `-` and `.` only.
//!
//! A command is one or more statements, one per line. It ends with `exit <code>` only where
//! the exit code is the result (`install-update`).

use std::fmt::Write as _;

use crate::model::{Action, Installer, Package, Readiness};
use crate::text::is_single_quote;

/// The file name the installer is staged under.
pub const INSTALLER_FILE_NAME: &str = "SkypeServerUpdateInstaller.exe";

/// The folder, next to the staged installer, that `stage-update` extracts the updates into.
pub const EXTRACT_DIR_NAME: &str = "extracted";

/// The name of the management assembly that the SkypeForBusiness (and Lync) PowerShell module
/// loads: a shell that has it loaded holds files the installer replaces.
const MANAGEMENT_ASSEMBLY: &str = "Microsoft.Rtc.Management.dll";

/// The exact PowerShell for `action`; `None` when the step does nothing on this server
/// ([`Action::DatabasesUpdatedBy`]).
pub fn render_command(action: &Action, package: &Package) -> Option<String> {
    let command = match action {
        Action::CheckAdminRole => check_admin_role(),
        Action::CheckFabricState {
            pool,
            readiness,
            reset_missing_replicas,
        } => check_fabric_state(pool, *readiness, *reset_missing_replicas),
        Action::Failover { computer } => {
            format!("Invoke-CsComputerFailOver -ComputerName {computer} -Confirm:$false")
        }
        Action::Failback { computer } => {
            format!("Invoke-CsComputerFailBack -ComputerName {computer} -Confirm:$false")
        }
        Action::StageUpdate {
            source,
            sha256,
            destination,
        } => stage_update(source, sha256, destination),
        Action::StopCsServices => "Stop-CsWindowsService".to_string(),
        Action::StopW3svc => "net stop w3svc".to_string(),
        Action::CloseManagementShells => close_management_shells(),
        Action::InstallUpdate { path } => {
            format!("{}\nexit $installer.ExitCode", start_installer(path))
        }
        Action::StartW3svc => "net start w3svc".to_string(),
        Action::UpdateConfiguredDatabases {
            sql_server_fqdn,
            exclude_collocated_stores,
        } => {
            let mut s = format!(
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn {sql_server_fqdn}"
            );
            if *exclude_collocated_stores {
                s.push_str(" -ExcludeCollocatedStores");
            }
            s
        }
        Action::UpdateLocalDatabases => "Install-CsDatabase -Update -LocalDatabases".to_string(),
        Action::DatabasesUpdatedBy { .. } => return None,
        Action::StartCsServices => "Start-CsWindowsService".to_string(),
        Action::Verify {
            build,
            sql_server_fqdn,
            sql_instance: _,
            check_databases,
            local_databases,
            check_services,
            fabric_pool,
        } => {
            let mut s = String::new();
            if *check_databases {
                let test = if *local_databases {
                    "Test-CsDatabase -LocalService".to_string()
                } else {
                    format!("Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn {sql_server_fqdn}")
                };
                verify_databases(&mut s, &test, package);
            }
            let build = ps_quote(&build.to_string());
            if *check_services {
                s.push_str(
                    "$stopped = @(Get-CsWindowsService | Where-Object { $_.Status -ne 'Running' })\n\
                     if ($stopped.Count -gt 0) { throw ('Services not running: {0}' -f ($stopped.Name -join ', ')) }\n",
                );
            }
            if let Some(pool) = fabric_pool {
                let _ = writeln!(s, "{}", missing_replicas_check(pool));
            }
            let _ = write!(
                s,
                "if (-not (Get-CsServerPatchVersion | Where-Object {{ $_.Version -eq {build} }})) \
                 {{ throw ('Get-CsServerPatchVersion does not show build {{0}}' -f {build}) }}"
            );
            s
        }
    };
    Some(command)
}

/// The statement that starts the installer unattended and waits for it; the process is left
/// in `$installer`.
pub(crate) fn start_installer(path: &str) -> String {
    format!(
        "$installer = Start-Process -FilePath {} -ArgumentList '/silentmode' -Wait -PassThru",
        ps_quote(path)
    )
}

/// A PowerShell single-quoted string literal holding `s` exactly.
pub fn ps_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if is_single_quote(c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The folder `stage-update` extracts into: `extracted` next to the staged installer.
pub fn extract_dir(destination: &str) -> String {
    match destination.rsplit_once('\\') {
        Some((dir, _)) => format!("{dir}\\{EXTRACT_DIR_NAME}"),
        None => EXTRACT_DIR_NAME.to_string(),
    }
}

fn check_admin_role() -> String {
    "if (-not ([Security.Principal.WindowsIdentity]::GetCurrent().Groups.Translate([Security.Principal.NTAccount], $false) \
     | Where-Object { $_.Value -match '\\\\(CsAdministrator|RTCUniversalServerAdmins)$' })) \
     { throw 'The current account is not a member of CsAdministrator or RTCUniversalServerAdmins: log on as a member of the CsAdministrator role.' }"
        .to_string()
}

/// Exit code of `check-fabric-state` when the pool answers `Busy`: try again in 10 minutes.
pub const POOL_BUSY_EXIT: i32 = 75;

/// Throws when `Get-CsPoolFabricState` reports missing replicas for the pool.
fn missing_replicas_check(pool: &sfbpatch_topology::Fqdn) -> String {
    format!(
        "$fabric = Get-CsPoolFabricState -PoolFqdn {pool} -Verbose 4>&1 | Out-String\n\
         if ($fabric -match 'missing replica') {{ throw ('Get-CsPoolFabricState -PoolFqdn {pool} reports missing replicas: {{0}}' -f $fabric.Trim()) }}"
    )
}

fn check_fabric_state(
    pool: &sfbpatch_topology::Fqdn,
    readiness: Readiness,
    reset_missing_replicas: bool,
) -> String {
    let mut s =
        format!("$fabric = Get-CsPoolFabricState -PoolFqdn {pool} -Verbose 4>&1 | Out-String\n");
    if reset_missing_replicas {
        let _ = writeln!(
            s,
            "if ($fabric -match 'missing replica') {{ Reset-CsPoolRegistrarState -PoolFqdn {pool} -ResetType QuorumLossRecovery -Confirm:$false }}"
        );
    } else {
        let _ = writeln!(
            s,
            "if ($fabric -match 'missing replica') {{ throw ('Pool {pool} has missing replicas; recover it first (Reset-CsPoolRegistrarState -PoolFqdn {pool} -ResetType QuorumLossRecovery): {{0}}' -f $fabric.Trim()) }}"
        );
    }
    let _ = writeln!(s, "$readiness = {}", readiness.cmdlet());
    let _ = write!(
        s,
        "if ($readiness.PoolUpgradeState -eq 'Busy') {{ Write-Output 'PoolUpgradeState: Busy'; exit {POOL_BUSY_EXIT} }}\n\
         if ($readiness.PoolUpgradeState -ne 'Ready') {{ throw ('Pool {pool} is not ready for a server to leave it: PoolUpgradeState {{0}}' -f $readiness.PoolUpgradeState) }}"
    );
    s
}

fn stage_update(source: &Installer, sha256: &str, destination: &str) -> String {
    let dest = ps_quote(destination);
    let dir = match destination.rsplit_once('\\') {
        Some((dir, _)) => dir,
        None => ".",
    };
    let mut s = format!(
        "New-Item -ItemType Directory -Force -Path {} | Out-Null\n",
        ps_quote(dir)
    );
    match source {
        Installer::Path(path) => {
            let _ = writeln!(
                s,
                "# {dest} is uploaded by sfbpatch over its SSH connection (SFTP) from {} on the controller",
                ps_quote(&crate::text::clean(path))
            );
        }
        Installer::Server(path) => {
            let _ = writeln!(
                s,
                "Copy-Item -LiteralPath {} -Destination {dest} -Force",
                ps_quote(path)
            );
        }
        Installer::Url(url) => {
            s.push_str(
                "[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12\n\
                 $ProgressPreference = 'SilentlyContinue'\n",
            );
            let _ = writeln!(
                s,
                "Invoke-WebRequest -UseBasicParsing -Uri {} -OutFile {dest}",
                ps_quote(url)
            );
        }
    }
    let sha = ps_quote(sha256);
    let _ = writeln!(
        s,
        "$hash = (Get-FileHash -LiteralPath {dest} -Algorithm SHA256).Hash"
    );
    let _ = writeln!(
        s,
        "if ($hash -ne {sha}) {{ Remove-Item -LiteralPath {dest} -Force; \
         throw ('SHA-256 of {{0}} is {{1}}, the manifest says {{2}}' -f {dest}, $hash, {sha}) }}"
    );
    let _ = writeln!(
        s,
        "$extract = Start-Process -FilePath {dest} -ArgumentList {} -Wait -PassThru",
        ps_quote(&format!("/extractall:\"{}\"", extract_dir(destination)))
    );
    let _ = write!(
        s,
        "if ($extract.ExitCode -ne 0) {{ throw ('Extracting {{0}} failed with exit code {{1}}' -f {dest}, $extract.ExitCode) }}"
    );
    s
}

fn close_management_shells() -> String {
    format!(
        "Get-Process -Name powershell, powershell_ise, pwsh -ErrorAction SilentlyContinue \
         | Where-Object {{ $_.Id -ne $PID -and $(try {{ $_.Modules.ModuleName -contains {} }} catch {{ $false }}) }} \
         | Stop-Process -Force",
        ps_quote(MANAGEMENT_ASSEMBLY)
    )
}

fn verify_databases(s: &mut String, test: &str, package: &Package) {
    let _ = writeln!(s, "$databases = @({test})");
    s.push_str(
        "if ($databases.Count -eq 0) { throw 'Test-CsDatabase returned no databases' }\n\
         $behind = @($databases | Where-Object { $_.InstalledVersion -ne $_.ExpectedVersion })\n\
         if ($behind.Count -gt 0) { throw ('Databases not at their expected version: {0}' -f \
         (($behind | ForEach-Object { '{0} {1}: installed {2}, expected {3}' -f $_.SqlServerFqdn, $_.DatabaseName, $_.InstalledVersion, $_.ExpectedVersion }) -join '; ')) }\n",
    );
    if package.schema_versions.is_empty() {
        return;
    }
    let conditions: Vec<String> = package
        .schema_versions
        .iter()
        .map(|(store, version)| {
            let names: Vec<String> = store.databases().iter().map(|d| ps_quote(d)).collect();
            format!(
                "($_.DatabaseName -in @({}) -and $_.InstalledVersion -ne {})",
                names.join(", "),
                ps_quote(version)
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "$schema = @($databases | Where-Object {{ {} }})",
        conditions.join(" -or ")
    );
    s.push_str(
        "if ($schema.Count -gt 0) { throw ('Databases not at the package''s schema version: {0}' -f \
         (($schema | ForEach-Object { '{0}: installed {1}' -f $_.DatabaseName, $_.InstalledVersion }) -join '; ')) }\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_every_single_quote_character() {
        assert_eq!(ps_quote("C:\\a b"), "'C:\\a b'");
        assert_eq!(ps_quote("it's"), "'it''s'");
        assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(ps_quote(""), "''");
    }

    #[test]
    fn extract_dir_is_next_to_the_installer() {
        assert_eq!(
            extract_dir(r"C:\staging\7.0.2046.553\SkypeServerUpdateInstaller.exe"),
            r"C:\staging\7.0.2046.553\extracted"
        );
        assert_eq!(extract_dir("x.exe"), "extracted");
    }
}

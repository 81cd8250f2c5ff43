//! What each step does to a machine of the world, and what its probe reads: the step
//! semantics behind [`LabTarget`](crate::LabTarget), each applied inside the transaction
//! `target.rs` opens for it. Front End pool steps (`failover`, `failback`, the fabric) are in
//! `frontend.rs`'s world; the rules and their sources are in `docs/lab.md`.

use rusqlite::{Connection, Transaction, params};
use serde_json::json;
use sfbpatch_engine::{Probe, ProbeVerdict, StepOutcome};
use sfbpatch_plan::{Action, Build, Installer, Package, ServerKind};

use crate::db::{self, BuildCol, Server};
use crate::frontend;
use crate::lab::Shared;
use crate::machine::{self, Missing};
use crate::target::StepCall;

pub(crate) fn fail(output: impl Into<String>) -> StepOutcome {
    StepOutcome::exit(1, output.into())
}

/// The effect of a step that runs. `reboot_exit`: the installer exits 3010.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    shared: &Shared,
    call: &StepCall<'_>,
    server: &mut Server,
    installer_hash: Option<&Result<String, String>>,
    reboot_exit: bool,
) -> rusqlite::Result<StepOutcome> {
    if let Some(missing) = machine::lacks(server, call.action) {
        server.refused_commands += 1;
        return Ok(not_there(server, call.action, missing));
    }
    let outcome = match call.action {
        Action::CheckAdminRole => check_admin_role(tx, &shared.operator)?,
        Action::CheckFabricState {
            pool,
            readiness,
            reset_missing_replicas,
        } => frontend::check_fabric_state(
            tx,
            server,
            pool.as_str(),
            *readiness,
            *reset_missing_replicas,
        )?,
        Action::Failover { computer } => frontend::failover(tx, server, computer.as_str())?,
        Action::Failback { computer } => frontend::failback(server, computer.as_str()),
        Action::StageUpdate {
            source,
            sha256,
            destination,
        } => stage(server, source, sha256, destination, installer_hash),
        Action::StopCsServices => {
            let stopped = server.stop_services();
            if stopped.is_empty() {
                StepOutcome::ok("Stop-CsWindowsService: no Skype for Business service was running")
            } else {
                StepOutcome::ok(format!(
                    "Stop-CsWindowsService: stopped {} services: {}",
                    stopped.len(),
                    stopped.join(", ")
                ))
            }
        }
        Action::StopW3svc => {
            let was = std::mem::replace(&mut server.w3svc, false);
            StepOutcome::ok(if was {
                "The World Wide Web Publishing Service service was stopped successfully."
            } else {
                "The World Wide Web Publishing Service service is not started."
            })
        }
        Action::CloseManagementShells => {
            let n = std::mem::replace(&mut server.open_shells, 0);
            StepOutcome::ok(match n {
                0 => "no Management Shell session was open".to_string(),
                1 => "closed 1 Management Shell session".to_string(),
                n => format!("closed {n} Management Shell sessions"),
            })
        }
        Action::InstallUpdate { path } => install(tx, server, path, call.package, reboot_exit)?,
        Action::StartW3svc => {
            let was = std::mem::replace(&mut server.w3svc, true);
            StepOutcome::ok(if was {
                "The World Wide Web Publishing Service service is already running."
            } else {
                "The World Wide Web Publishing Service service was started successfully."
            })
        }
        Action::UpdateConfiguredDatabases {
            sql_server_fqdn,
            exclude_collocated_stores,
        } => update_configured(
            tx,
            server,
            sql_server_fqdn.as_str(),
            *exclude_collocated_stores,
        )?,
        Action::UpdateLocalDatabases => update_local(tx, server)?,
        Action::DatabasesUpdatedBy { server: by } => StepOutcome::ok(format!(
            "nothing to do here: the back end's databases are updated from {by} once every node has the update"
        )),
        Action::StartCsServices if server.failed_over => fail(format!(
            "Start-CsWindowsService : Cannot start service RTCSRV on computer '{}': the service \
             is disabled (Invoke-CsComputerFailOver disabled the Skype for Business services; \
             Invoke-CsComputerFailBack enables and starts them)",
            server.fqdn
        )),
        Action::StartCsServices => {
            let started = server.start_services();
            if started.is_empty() {
                StepOutcome::ok("Start-CsWindowsService: every service was already running")
            } else {
                StepOutcome::ok(format!(
                    "Start-CsWindowsService: started {} services on build {}: {}",
                    started.len(),
                    server.files_build(),
                    started.join(", ")
                ))
            }
        }
        Action::Verify {
            build,
            sql_server_fqdn,
            sql_instance,
            check_databases,
            local_databases,
            check_services,
            fabric_pool,
        } => {
            let check = match (*check_databases, *local_databases) {
                (false, _) => DatabaseCheck::None,
                (true, true) => DatabaseCheck::Local,
                (true, false) => {
                    DatabaseCheck::Configured(sql_server_fqdn.as_str(), sql_instance.as_str())
                }
            };
            let mut outcome = verify(
                tx,
                server,
                *build,
                check,
                *check_services,
                shared.initial_build,
            )?;
            if let Some(pool) = fabric_pool {
                frontend::verify_fabric(tx, server, pool.as_str(), &mut outcome)?;
            }
            outcome
        }
    };
    Ok(outcome)
}

/// What a machine answers when told to run something it does not have: PowerShell's "not
/// recognized" for a cmdlet of a module that is not installed, `net`'s "service name is
/// invalid" for a service that does not exist.
fn not_there(server: &Server, action: &Action, missing: Missing) -> StepOutcome {
    let command = machine::command_word(action);
    match missing {
        Missing::Service => StepOutcome::exit(
            2,
            format!(
                "{command} on {}: The service name is invalid. (IIS is not installed on this machine)",
                server.fqdn
            ),
        ),
        Missing::Module => fail(format!(
            "{command} : The term '{command}' is not recognized as the name of a cmdlet, function, \
             script file, or operable program ({} has no Skype for Business Management Shell)",
            server.fqdn
        )),
        Missing::Components => fail(format!(
            "SkypeServerUpdateInstaller on {}: no Skype for Business Server component is \
             installed on this machine; nothing to update",
            server.fqdn
        )),
    }
}

fn check_admin_role(tx: &Connection, operator: &str) -> rusqlite::Result<StepOutcome> {
    let groups: Vec<String> = tx
        .prepare_cached("SELECT grp FROM accounts WHERE account = ?1 ORDER BY grp")?
        .query_map([operator], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let held: Vec<&str> = groups
        .iter()
        .map(String::as_str)
        .filter(|g| ["CsAdministrator", "RTCUniversalServerAdmins"].contains(g))
        .collect();
    Ok(if held.is_empty() {
        fail(format!(
            "{operator} is not a member of CsAdministrator or RTCUniversalServerAdmins: \
             act as an account that holds one of these roles"
        ))
    } else {
        StepOutcome::ok(format!("{operator} is a member of {}", held.join(", ")))
    })
}

fn stage(
    server: &mut Server,
    source: &Installer,
    sha256: &str,
    destination: &str,
    installer_hash: Option<&Result<String, String>>,
) -> StepOutcome {
    let path = match source {
        Installer::Url(url) => {
            return fail(format!(
                "the lab cannot download; use a local installer file (the package names {url})"
            ));
        }
        Installer::Path(path) => path,
        Installer::Server(path) => path,
    };
    match installer_hash {
        None => fail(format!("cannot read the installer {path}")),
        Some(Err(e)) => fail(format!("cannot read the installer {path}: {e}")),
        Some(Ok(actual)) if !actual.eq_ignore_ascii_case(sha256) => fail(format!(
            "SHA-256 mismatch for {path}: the package expects {}, the file has {actual}; \
             nothing was staged",
            sha256.to_ascii_lowercase()
        )),
        Some(Ok(actual)) => {
            server.staged_path = Some(destination.to_string());
            server.staged_sha256 = Some(actual.clone());
            StepOutcome::ok(format!(
                "copied {path} to {destination} on {}, SHA-256 {actual} matches the package, extracted",
                server.fqdn
            ))
        }
    }
}

fn install(
    tx: &Connection,
    server: &mut Server,
    path: &str,
    package: &Package,
    reboot_exit: bool,
) -> rusqlite::Result<StepOutcome> {
    let staged = server
        .staged_path
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case(path))
        && server
            .staged_sha256
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&package.sha256));
    if !staged {
        return Ok(fail(format!(
            "the installer was not staged: {path} is missing or is not the package's file \
             (stage-update first)"
        )));
    }
    if package.version < server.installed {
        return Ok(fail(format!(
            "build {} is installed, newer than the package's {}: nothing installed",
            server.installed, package.version
        )));
    }
    let mut in_use: Vec<String> = server.running_services().map(|s| s.name.clone()).collect();
    if server.w3svc {
        in_use.push("W3SVC".to_string());
    }
    match server.open_shells {
        0 => {}
        1 => in_use.push("1 open Management Shell".to_string()),
        n => in_use.push(format!("{n} open Management Shells")),
    }
    if !in_use.is_empty() {
        return Ok(fail(format!("files in use: {}", in_use.join(", "))));
    }

    let mut record = tx.prepare_cached(
        "INSERT OR IGNORE INTO schemas (build, store, version) VALUES (?1, ?2, ?3)",
    )?;
    for (store, version) in &package.schema_versions {
        record.execute(params![BuildCol(package.version), store.as_str(), version])?;
    }
    let old = server.files_build();
    server.previous = old;
    server.installed = package.version;
    server.installer_runs += 1;
    server.reboot_pending = reboot_exit;
    // The installer restarts the services it stopped; they load the assemblies that were in
    // memory before the global assembly cache changed. Services disabled by failover stay
    // stopped.
    let restarted = if server.failed_over {
        0
    } else {
        for s in server.services.iter_mut() {
            s.running = true;
            s.loaded = old;
        }
        server.services.len()
    };
    let mut output = format!(
        "SkypeServerUpdateInstaller: installed {} (was {old}); the installer restarted \
         {restarted} services",
        package.version,
    );
    if server.failed_over {
        output.push_str(" (the others are disabled: the server is failed over)");
    }
    if reboot_exit {
        output.push_str("; a restart is required to complete the update (exit 3010)");
    }
    Ok(StepOutcome::exit(
        if reboot_exit { 3010 } else { 0 },
        output,
    ))
}

/// Brings every database of `instances` to the schema of `build` (never back). Returns one
/// line per database changed.
fn update_instances(
    tx: &Connection,
    instances: &[db::Instance],
    build: Build,
) -> rusqlite::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut update = tx.prepare_cached(
        "UPDATE databases SET build = ?1, version = ?2 WHERE instance_id = ?3 AND ord = ?4",
    )?;
    for instance in instances {
        for d in db::databases(tx, instance.id)? {
            if build > d.build {
                let version = db::schema_version(tx, d.store, build)?;
                update.execute(params![BuildCol(build), version, instance.id, d.ord])?;
                lines.push(format!(
                    "  {} {}: {} -> {version}",
                    instance.label(),
                    d.name,
                    d.version
                ));
            }
        }
    }
    Ok(lines)
}

fn databases_output(command: &str, build: Build, lines: Vec<String>) -> String {
    if lines.is_empty() {
        format!(
            "{command}: every database already has the schema of build {build}; nothing changed"
        )
    } else {
        format!(
            "{command}: updated {} databases to the schema of build {build}\n{}",
            lines.len(),
            lines.join("\n")
        )
    }
}

fn update_configured(
    tx: &Connection,
    server: &Server,
    sql_server_fqdn: &str,
    exclude_collocated: bool,
) -> rusqlite::Result<StepOutcome> {
    let instances = db::instances_on(tx, sql_server_fqdn)?;
    if instances.is_empty() {
        return Ok(fail(format!(
            "Install-CsDatabase: the topology has no SQL Server {sql_server_fqdn}; nothing changed"
        )));
    }
    if instances.iter().any(|i| i.standard_edition) {
        return Ok(fail(format!(
            "Install-CsDatabase: {sql_server_fqdn} is a Standard Edition server's own SQL Server: \
             use -LocalDatabases on a Standard Edition server; nothing changed"
        )));
    }
    let mut output = String::new();
    if !exclude_collocated {
        for i in instances.iter().filter(|i| !i.collocated.is_empty()) {
            let stores: Vec<String> = i
                .collocated
                .iter()
                .map(|s| format!("{} ({})", s.as_str(), s.databases().join(", ")))
                .collect();
            output.push_str(&format!(
                "WARNING: collocated stores on {}: {}. They must be installed from the local \
                 computer; -ExcludeCollocatedStores suppresses this warning.\n",
                i.label(),
                stores.join(", ")
            ));
        }
    }
    let lines = update_instances(tx, &instances, server.installed)?;
    output.push_str(&databases_output(
        &format!(
            "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn {sql_server_fqdn}"
        ),
        server.installed,
        lines,
    ));
    Ok(StepOutcome::ok(output))
}

/// The instances on a Standard Edition server's own cluster; none for a back-end server.
fn local_instances(tx: &Connection, server: &Server) -> rusqlite::Result<Vec<db::Instance>> {
    if server.kind != ServerKind::StandardEdition {
        return Ok(Vec::new());
    }
    let backend = db::instance_by_id(tx, server.backend_id)?;
    db::instances_on(tx, &backend.sql_server_fqdn)
}

/// The instances whose databases the server's services use: `Test-CsDatabase -LocalService`
/// checks these whatever the server's role, so a wrong update variant shows up in `verify`.
fn serving_instances(tx: &Connection, server: &Server) -> rusqlite::Result<Vec<db::Instance>> {
    let backend = db::instance_by_id(tx, server.backend_id)?;
    db::instances_on(tx, &backend.sql_server_fqdn)
}

fn update_local(tx: &Connection, server: &Server) -> rusqlite::Result<StepOutcome> {
    const COMMAND: &str = "Install-CsDatabase -Update -LocalDatabases";
    if server.kind != ServerKind::StandardEdition {
        return Ok(StepOutcome::ok(format!(
            "{COMMAND}: {} is not a Standard Edition server; its local databases hold \
             none of the back end's stores: no back-end database changed",
            server.fqdn
        )));
    }
    let instances = local_instances(tx, server)?;
    let lines = update_instances(tx, &instances, server.installed)?;
    Ok(StepOutcome::ok(databases_output(
        COMMAND,
        server.installed,
        lines,
    )))
}

/// Which databases `verify` checks.
enum DatabaseCheck<'a> {
    None,
    /// `Test-CsDatabase -ConfiguredDatabases`: one instance of the back end.
    Configured(&'a str, &'a str),
    /// `Test-CsDatabase -LocalService`: the instances on a Standard Edition server's own
    /// cluster (none on a back-end server).
    Local,
}

fn verify(
    tx: &Connection,
    server: &Server,
    build: Build,
    databases: DatabaseCheck<'_>,
    check_services: bool,
    initial: Build,
) -> rusqlite::Result<StepOutcome> {
    let mut problems = Vec::new();
    let mut good = Vec::new();
    if server.installed == build {
        good.push(format!("Get-CsServerPatchVersion: {build}"));
    } else {
        problems.push(format!(
            "Get-CsServerPatchVersion: build {} is installed, the package is {build}",
            server.installed
        ));
    }
    if server.reboot_pending {
        problems.push("a restart is pending (installer exit 3010)".to_string());
    }
    let stopped: Vec<&str> = server
        .services
        .iter()
        .filter(|s| !s.running && check_services)
        .map(|s| s.name.as_str())
        .collect();
    if !stopped.is_empty() {
        problems.push(format!(
            "Get-CsWindowsService: {} services stopped: {}",
            stopped.len(),
            stopped.join(", ")
        ));
    }
    let stale: Vec<String> = server
        .services
        .iter()
        .filter(|s| check_services && s.running && s.loaded != server.installed)
        .map(|s| format!("{} ({})", s.name, s.loaded))
        .collect();
    if !stale.is_empty() {
        problems.push(format!(
            "Get-CsWindowsService: {} services run on old assemblies while {} is installed: {}",
            stale.len(),
            server.installed,
            stale.join(", ")
        ));
    }
    if check_services {
        if stopped.is_empty() && stale.is_empty() {
            good.push(format!(
                "Get-CsWindowsService: {} services running on {}",
                server.services.len(),
                server.installed
            ));
        }
        if server.w3svc {
            good.push("W3SVC: running".to_string());
        } else {
            problems.push("W3SVC is stopped".to_string());
        }
    }
    let instances = match databases {
        DatabaseCheck::None => Vec::new(),
        DatabaseCheck::Local => serving_instances(tx, server)?,
        DatabaseCheck::Configured(sql_server_fqdn, instance_name) => {
            match db::instance_named(tx, sql_server_fqdn, instance_name)? {
                Some(instance) => vec![instance],
                None => {
                    problems.push(format!(
                        "Test-CsDatabase: the topology has no SQL Server instance \
                         {sql_server_fqdn}\\{instance_name}"
                    ));
                    Vec::new()
                }
            }
        }
    };
    if let DatabaseCheck::Configured(sql_server_fqdn, _) = databases {
        let newest = instances
            .iter()
            .map(|i| db::databases(tx, i.id))
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .map(|d| d.build)
            .max();
        if let Some(newest) = newest {
            for (fe, fe_build) in frontend::behind_databases(tx, sql_server_fqdn, newest)? {
                problems.push(format!(
                    "Front End server {fe} runs build {fe_build} while the databases on \
                     {sql_server_fqdn} have the schema of build {newest}"
                ));
            }
        }
    }
    for instance in &instances {
        let (count, behind) = db::databases_behind(tx, instance, initial)?;
        if behind.is_empty() {
            good.push(format!(
                "Test-CsDatabase {}: {count} databases, InstalledVersion = ExpectedVersion",
                instance.label()
            ));
        }
        for b in behind {
            problems.push(format!(
                "Test-CsDatabase {} {}: InstalledVersion {}, ExpectedVersion {}, Succeed False",
                b.instance, b.database, b.installed, b.expected
            ));
        }
    }
    Ok(if problems.is_empty() {
        StepOutcome::ok(good.join("\n"))
    } else {
        fail(format!(
            "verification failed on {}:\n{}",
            server.fqdn,
            problems
                .iter()
                .map(|p| format!("- {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })
}

/// Whether the step's effect is present, and the facts read.
/// The SQL Server whose databases `action` (an `update-databases` action) updates.
pub(crate) fn updated_sql_server(
    tx: &Connection,
    action: &Action,
    server: &Server,
) -> rusqlite::Result<Option<String>> {
    Ok(match action {
        Action::UpdateConfiguredDatabases {
            sql_server_fqdn, ..
        } => Some(sql_server_fqdn.to_string()),
        Action::UpdateLocalDatabases if server.kind == ServerKind::StandardEdition => {
            Some(db::instance_by_id(tx, server.backend_id)?.sql_server_fqdn)
        }
        _ => None,
    })
}

/// What a SQL Server failover in the middle of `Install-CsDatabase` leaves: the first
/// database that was behind is updated, the rest not. Returns it (`server\instance name`).
pub(crate) fn update_first_behind(
    tx: &Connection,
    action: &Action,
    server: &Server,
) -> rusqlite::Result<Option<String>> {
    let instances = match action {
        Action::UpdateConfiguredDatabases {
            sql_server_fqdn, ..
        } => db::instances_on(tx, sql_server_fqdn.as_str())?,
        Action::UpdateLocalDatabases => local_instances(tx, server)?,
        _ => return Ok(None),
    };
    for instance in &instances {
        for d in db::databases(tx, instance.id)? {
            if server.installed > d.build {
                let version = db::schema_version(tx, d.store, server.installed)?;
                tx.prepare_cached(
                    "UPDATE databases SET build = ?1, version = ?2 WHERE instance_id = ?3 AND ord = ?4",
                )?
                .execute(params![BuildCol(server.installed), version, instance.id, d.ord])?;
                return Ok(Some(format!("{} {}", instance.label(), d.name)));
            }
        }
    }
    Ok(None)
}

pub(crate) fn probe(
    tx: &Connection,
    call: &StepCall<'_>,
    server: &Server,
    initial: Build,
    now: i64,
) -> rusqlite::Result<Probe> {
    let running = server.running_services().count();
    let files = server.files_build();
    let on_files = server
        .services
        .iter()
        .filter(|s| s.running && s.loaded == files)
        .count();
    let mut facts = json!({
        "server": server.fqdn,
        "installed_build": server.installed.to_string(),
        "services": server.services.len(),
        "services_running": running,
        "services_on_installed_build": server
            .services
            .iter()
            .filter(|s| s.running && s.loaded == server.installed)
            .count(),
        "w3svc": if server.w3svc { "running" } else { "stopped" },
        "open_shells": server.open_shells,
        "reboot_pending": server.reboot_pending,
    });
    facts["failed_over"] = json!(server.failed_over);
    if let (Action::InstallUpdate { .. }, Some(until)) =
        (call.action, server.installer_running_at(now))
    {
        facts["installer_running_minutes"] = json!((until - now) as f64 / 60_000.0);
        return Ok(Probe {
            verdict: ProbeVerdict::Running,
            facts: facts.to_string(),
        });
    }
    let done = match call.action {
        Action::CheckAdminRole
        | Action::CloseManagementShells
        | Action::Verify { .. }
        | Action::CheckFabricState { .. } => false,
        Action::Failover { .. } => server.failed_over,
        Action::Failback { .. } => !server.failed_over,
        Action::StageUpdate {
            sha256,
            destination,
            ..
        } => {
            facts["staged_path"] = json!(server.staged_path);
            facts["staged_sha256"] = json!(server.staged_sha256);
            server
                .staged_path
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(destination))
                && server
                    .staged_sha256
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(sha256))
        }
        Action::StopCsServices => running == 0,
        Action::StopW3svc => !server.w3svc,
        Action::StartW3svc => server.w3svc,
        Action::InstallUpdate { .. } => server.installed >= call.package.version,
        Action::StartCsServices => on_files == server.services.len(),
        Action::DatabasesUpdatedBy { .. } => true,
        Action::UpdateConfiguredDatabases {
            sql_server_fqdn, ..
        } => {
            let instances = db::instances_on(tx, sql_server_fqdn.as_str())?;
            if instances.is_empty() || instances.iter().any(|i| i.standard_edition) {
                facts["databases_behind"] = json!(null);
                false
            } else {
                let behind = behind_count(tx, &instances, initial)?;
                facts["databases_behind"] = json!(behind);
                behind == 0
            }
        }
        Action::UpdateLocalDatabases => {
            let instances = local_instances(tx, server)?;
            let behind = behind_count(tx, &instances, initial)?;
            facts["databases_behind"] = json!(behind);
            behind == 0
        }
    };
    Ok(Probe {
        verdict: if done {
            ProbeVerdict::Done
        } else {
            ProbeVerdict::NotDone
        },
        facts: facts.to_string(),
    })
}

fn behind_count(
    tx: &Connection,
    instances: &[db::Instance],
    initial: Build,
) -> rusqlite::Result<usize> {
    let mut behind = 0;
    for instance in instances {
        behind += db::databases_behind(tx, instance, initial)?.1.len();
    }
    Ok(behind)
}

//! The Front End pool world: routing groups, pool quorum, failover and failback, the fabric
//! state and what users feel (SPEC.md section 6; docs/lab.md "Front End pools").
//!
//! Each user's registration lives in a routing group with one primary and up to two secondary
//! replicas on different Front End servers. The lab places `GROUPS_PER_SERVER` routing groups
//! per server, group `g` on servers `g`, `g + 1`, `g + 2` (modulo the pool's size, in the
//! pool's `Get-CsComputer` order); its primary is the first of those that is active. A server
//! is **active** while it is a member of the pool (not failed over) and every Skype for
//! Business service on it runs.

use rusqlite::{Connection, OptionalExtension, params};
use sfbpatch_engine::StepOutcome;
// Pool-level quorum (SPEC.md section 6) lives with the topology: the reports use it too.
pub(crate) use sfbpatch_topology::quorum;

use crate::db::{self, Server};
use crate::steps::fail;

/// Routing groups per Front End server.
pub(crate) const GROUPS_PER_SERVER: usize = 4;

/// One Front End server of a pool, as the pool sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub id: i64,
    pub fqdn: String,
    pub active: bool,
    /// Services stopped while still a member of the pool: its users' sessions were dropped.
    pub dropped: bool,
}

/// A pool's Front End servers, in `Get-CsComputer -PoolFqdn` order.
/// One query: what [`is_active`] reads of each server (whether it failed over, whether every
/// service runs), not the whole server.
pub(crate) fn members(tx: &Connection, pool_id: i64) -> rusqlite::Result<Vec<Member>> {
    tx.prepare_cached(
        "SELECT id, fqdn, failed_over,
                NOT EXISTS (SELECT 1 FROM services WHERE server_id = servers.id AND NOT running)
         FROM servers WHERE pool_id = ?1 ORDER BY pool_ord, id",
    )?
    .query_map([pool_id], |r| {
        let failed_over: bool = r.get(2)?;
        let running: bool = r.get(3)?;
        Ok(Member {
            id: r.get(0)?,
            fqdn: r.get(1)?,
            active: !failed_over && running,
            dropped: !failed_over && !running,
        })
    })?
    .collect()
}

/// Whether a Front End server holds its replicas: a member of its pool (not failed over) with
/// every Skype for Business service running.
pub(crate) fn is_active(s: &Server) -> bool {
    !s.failed_over && s.services.iter().all(|svc| svc.running)
}

/// Whether the pool keeps quorum with `active` telling which servers are active.
pub(crate) fn has_quorum(active: &[bool]) -> bool {
    let (required, among) = quorum(active.len());
    active.iter().take(among).filter(|a| **a).count() >= required
}

/// The servers (indices) holding the replicas of routing group `g` in a pool of `n`.
pub(crate) fn replicas(g: usize, n: usize) -> Vec<usize> {
    (0..n.min(3)).map(|k| (g + k) % n).collect()
}

/// Why taking server `i` out of the pool would hurt it, if it would: a routing group left
/// without an active replica, or the pool below quorum.
pub(crate) fn leaving_refused(pool: &[Member], i: usize) -> Option<String> {
    let n = pool.len();
    if n < 2 {
        return Some(format!(
            "{} is the pool's only Front End server: there is no server to move its users to",
            pool[i].fqdn
        ));
    }
    let mut after: Vec<bool> = pool.iter().map(|m| m.active).collect();
    after[i] = false;
    for g in 0..n * GROUPS_PER_SERVER {
        let holders = replicas(g, n);
        if holders.contains(&i) && !holders.iter().any(|&h| after[h]) {
            let names: Vec<&str> = holders.iter().map(|&h| pool[h].fqdn.as_str()).collect();
            return Some(format!(
                "routing group {g} would have no active replica (its replicas are on {})",
                names.join(", ")
            ));
        }
    }
    if !has_quorum(&after) {
        let (required, among) = quorum(n);
        return Some(format!(
            "the pool would fall below quorum: {required} of its first {among} Front End servers must stay active, {} would",
            after.iter().take(among).filter(|a| **a).count()
        ));
    }
    None
}

/// `Get-CsPoolFabricState`: one line per routing group with its replicas, primary first.
pub(crate) fn fabric_state(pool: &[Member], missing_replicas: bool) -> String {
    let n = pool.len();
    let mut lines = Vec::new();
    let mut missing = 0;
    for g in 0..n * GROUPS_PER_SERVER {
        let holders = replicas(g, n);
        let active: Vec<&str> = holders
            .iter()
            .filter(|&&h| pool[h].active)
            .map(|&h| pool[h].fqdn.as_str())
            .collect();
        if active.len() < holders.len() {
            missing += 1;
        }
        lines.push(format!(
            "  routing group {g}: primary {}, {} of {} replicas active",
            active.first().copied().unwrap_or("(none)"),
            active.len(),
            holders.len()
        ));
    }
    let head = if missing_replicas {
        format!(
            "Get-CsPoolFabricState: {} routing groups; missing replicas: the fabric lost replicas \
             of some routing groups (run Reset-CsPoolRegistrarState -ResetType QuorumLossRecovery)",
            n * GROUPS_PER_SERVER
        )
    } else if missing > 0 {
        format!(
            "Get-CsPoolFabricState: {} routing groups, {missing} with a replica on a server out of the pool",
            n * GROUPS_PER_SERVER
        )
    } else {
        format!(
            "Get-CsPoolFabricState: {} routing groups, every replica active",
            n * GROUPS_PER_SERVER
        )
    };
    let mut out = head;
    for line in lines.iter().take(8) {
        out.push('\n');
        out.push_str(line);
    }
    if lines.len() > 8 {
        out.push_str(&format!("\n  ... and {} more", lines.len() - 8));
    }
    out
}

/// The pool's `missing_replicas` flag.
pub(crate) fn missing_replicas(tx: &Connection, pool_id: i64) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT missing_replicas FROM pools WHERE id = ?1")?
        .query_row([pool_id], |r| r.get(0))
}

pub(crate) fn clear_missing_replicas(tx: &Connection, pool_id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE pools SET missing_replicas = 0 WHERE id = ?1")?
        .execute([pool_id])?;
    Ok(())
}

pub(crate) fn pool_fqdn(tx: &Connection, pool_id: i64) -> rusqlite::Result<String> {
    tx.prepare_cached("SELECT fqdn FROM pools WHERE id = ?1")?
        .query_row([pool_id], |r| r.get(0))
}

/// Records the pool's state at `at` after one of its servers changed: servers in service,
/// and whether the pool is down (below quorum) or its users are affected (a server stopped
/// without failover, or the pool down).
pub(crate) fn record_pool_state(tx: &Connection, pool_id: i64, at: i64) -> rusqlite::Result<()> {
    let pool = members(tx, pool_id)?;
    let active: Vec<bool> = pool.iter().map(|m| m.active).collect();
    let in_service = active.iter().filter(|a| **a).count() as i64;
    record_sample(tx, pool_id, at, in_service)?;
    let down = !has_quorum(&active);
    let impact = down || pool.iter().any(|m| m.dropped);
    set_interval(tx, pool_id, "down", down, at)?;
    set_interval(tx, pool_id, "impact", impact, at)?;
    Ok(())
}

/// Records the number of servers in service at `at` when it changed. A change at the instant of
/// the last one (not the pool's first sample) replaces it, and one that undoes it removes it: no
/// sample of zero length.
fn record_sample(tx: &Connection, pool_id: i64, at: i64, in_service: i64) -> rusqlite::Result<()> {
    let last: Vec<(i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT rowid, at_ms, in_service FROM front_end_samples WHERE pool_id = ?1
             ORDER BY at_ms DESC, rowid DESC LIMIT 2",
        )?
        .query_map([pool_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    match last.as_slice() {
        [(_, _, n), ..] if *n == in_service => {}
        [(rowid, t, _), (_, _, before)] if *t == at && *before == in_service => {
            tx.prepare_cached("DELETE FROM front_end_samples WHERE rowid = ?1")?
                .execute([rowid])?;
        }
        [(rowid, t, _), _] if *t == at => {
            tx.prepare_cached("UPDATE front_end_samples SET in_service = ?2 WHERE rowid = ?1")?
                .execute([*rowid, in_service])?;
        }
        _ => {
            tx.prepare_cached(
                "INSERT INTO front_end_samples (pool_id, at_ms, in_service) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![pool_id, at, in_service])?;
        }
    }
    Ok(())
}

/// Opens or closes the pool's open interval of `kind`. Opened again at the instant it closed,
/// the same interval goes on.
fn set_interval(
    tx: &Connection,
    pool_id: i64,
    kind: &str,
    on: bool,
    at: i64,
) -> rusqlite::Result<()> {
    let open: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM pool_intervals WHERE pool_id = ?1 AND kind = ?2 AND end_ms IS NULL",
        )?
        .query_row(params![pool_id, kind], |r| r.get(0))
        .optional()?;
    match (on, open) {
        (true, None) => {
            let reopened = tx
                .prepare_cached(
                    "UPDATE pool_intervals SET end_ms = NULL
                     WHERE id = (SELECT id FROM pool_intervals WHERE pool_id = ?1 AND kind = ?2
                                 ORDER BY start_ms DESC, id DESC LIMIT 1)
                       AND end_ms = ?3",
                )?
                .execute(params![pool_id, kind, at])?;
            if reopened == 0 {
                tx.prepare_cached(
                    "INSERT INTO pool_intervals (pool_id, kind, start_ms) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![pool_id, kind, at])?;
            }
        }
        (false, Some(id)) => {
            tx.prepare_cached(
                "UPDATE pool_intervals SET end_ms = max(start_ms, ?2) WHERE id = ?1",
            )?
            .execute([id, at])?;
        }
        _ => {}
    }
    Ok(())
}

/// The Front End servers of the pools whose back end is on `sql_server_fqdn` that run an older
/// build than `build`: a database update from a newer build leaves them on databases they do
/// not know.
pub(crate) fn behind_databases(
    tx: &Connection,
    sql_server_fqdn: &str,
    build: sfbpatch_plan::Build,
) -> rusqlite::Result<Vec<(String, sfbpatch_plan::Build)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT s.fqdn, s.installed_build FROM servers s JOIN sql_instances i ON i.id = s.backend_id
         WHERE i.sql_server_key = ?1 AND s.kind = 'front-end' ORDER BY s.id",
    )?;
    let rows = stmt
        .query_map([sql_server_fqdn.to_ascii_lowercase()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, db::BuildCol>(1)?.0))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows.into_iter().filter(|(_, b)| *b < build).collect())
}

// ---------------------------------------------------------------------------------------------
// The pool steps: the fabric check, failover, failback, and verify's fabric check.

/// The pool a Front End server belongs to, checked against the name the step gives.
fn pool_of(
    tx: &Connection,
    server: &Server,
    pool: &str,
) -> rusqlite::Result<Result<i64, StepOutcome>> {
    let Some(id) = server.pool_id else {
        return Ok(Err(fail(format!(
            "{} is not a Front End server of an Enterprise pool",
            server.fqdn
        ))));
    };
    let name = pool_fqdn(tx, id)?;
    if !name.eq_ignore_ascii_case(pool) {
        return Ok(Err(fail(format!(
            "{} is a Front End server of pool {name}, not of {pool}",
            server.fqdn
        ))));
    }
    Ok(Ok(id))
}

/// `Get-CsPoolFabricState` and the pool's upgrade readiness, run on a Front End server of the
/// pool about to lose it.
pub(crate) fn check_fabric_state(
    tx: &Connection,
    server: &Server,
    pool: &str,
    readiness: sfbpatch_plan::Readiness,
    reset: bool,
) -> rusqlite::Result<StepOutcome> {
    let pool_id = match pool_of(tx, server, pool)? {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let mut lines = Vec::new();
    if missing_replicas(tx, pool_id)? {
        if !reset {
            let members = members(tx, pool_id)?;
            return Ok(fail(format!(
                "{}\npool {pool} has missing replicas: recover it first \
                 (Reset-CsPoolRegistrarState -PoolFqdn {pool} -ResetType QuorumLossRecovery); \
                 no server of the pool is patched",
                fabric_state(&members, true)
            )));
        }
        clear_missing_replicas(tx, pool_id)?;
        lines.push(format!(
            "Reset-CsPoolRegistrarState -PoolFqdn {pool} -ResetType QuorumLossRecovery: the \
             routing groups' replicas were rebuilt"
        ));
    }
    let members = members(tx, pool_id)?;
    lines.push(fabric_state(&members, false));
    let i = members.iter().position(|m| m.id == server.id).unwrap_or(0);
    let cmdlet = readiness.cmdlet();
    match leaving_refused(&members, i) {
        Some(why) if members.len() > 1 => {
            lines.push(format!(
                "{cmdlet}: PoolUpgradeState InsufficientActiveFrontEnds: {why}"
            ));
            Ok(fail(lines.join("\n")))
        }
        _ => {
            lines.push(format!(
                "{cmdlet}: PoolUpgradeState Ready; {} of {} Front End servers active",
                members.iter().filter(|m| m.active).count(),
                members.len()
            ));
            Ok(StepOutcome::ok(lines.join("\n")))
        }
    }
}

/// `Invoke-CsComputerFailOver`: moves the server's routing groups to the pool's other Front
/// End servers, stops its services and takes it out of the pool; refused when that would
/// leave a routing group without an active replica or the pool below quorum.
pub(crate) fn failover(
    tx: &Connection,
    server: &mut Server,
    computer: &str,
) -> rusqlite::Result<StepOutcome> {
    if !server.fqdn.eq_ignore_ascii_case(computer) {
        return Ok(fail(format!(
            "Invoke-CsComputerFailOver -ComputerName {computer} was sent to {}",
            server.fqdn
        )));
    }
    let Some(pool_id) = server.pool_id else {
        return Ok(fail(format!(
            "{} is not a Front End server of an Enterprise pool",
            server.fqdn
        )));
    };
    if server.failed_over {
        return Ok(StepOutcome::ok(format!(
            "Invoke-CsComputerFailOver: {computer} is already out of its pool"
        )));
    }
    if missing_replicas(tx, pool_id)? {
        return Ok(fail(format!(
            "Invoke-CsComputerFailOver -ComputerName {computer}: refused: the pool has missing replicas"
        )));
    }
    let members = members(tx, pool_id)?;
    let i = members.iter().position(|m| m.id == server.id).unwrap_or(0);
    if let Some(why) = leaving_refused(&members, i) {
        return Ok(fail(format!(
            "Invoke-CsComputerFailOver -ComputerName {computer}: refused: {why}; nothing changed"
        )));
    }
    let stopped = server.stop_services();
    server.failed_over = true;
    Ok(StepOutcome::ok(format!(
        "Invoke-CsComputerFailOver -ComputerName {computer}: its routing groups moved to the pool's \
         other Front End servers; stopped {} services; the server is out of the pool",
        stopped.len()
    )))
}

/// `Invoke-CsComputerFailBack`: starts the server's services and returns it to its pool.
pub(crate) fn failback(server: &mut Server, computer: &str) -> StepOutcome {
    if !server.fqdn.eq_ignore_ascii_case(computer) {
        return fail(format!(
            "Invoke-CsComputerFailBack -ComputerName {computer} was sent to {}",
            server.fqdn
        ));
    }
    if server.reboot_pending {
        return fail(format!(
            "Invoke-CsComputerFailBack -ComputerName {computer}: refused: a restart is pending"
        ));
    }
    if !server.failed_over {
        return StepOutcome::ok(format!(
            "Invoke-CsComputerFailBack: {computer} is a member of its pool already"
        ));
    }
    let started = server.start_services();
    server.failed_over = false;
    StepOutcome::ok(format!(
        "Invoke-CsComputerFailBack -ComputerName {computer}: started {} services; the server is \
         back in its pool on build {}",
        started.len(),
        server.files_build()
    ))
}

/// `verify` on a Front End server: the pool's fabric is healthy again with the server in it.
pub(crate) fn verify_fabric(
    tx: &Connection,
    server: &Server,
    pool: &str,
    outcome: &mut StepOutcome,
) -> rusqlite::Result<()> {
    let pool_id = match pool_of(tx, server, pool)? {
        Ok(id) => id,
        Err(o) => {
            *outcome = o;
            return Ok(());
        }
    };
    let members = members(tx, pool_id)?;
    let missing = missing_replicas(tx, pool_id)?;
    let me_active = members.iter().any(|m| m.id == server.id && m.active);
    let mut problems = Vec::new();
    if missing {
        problems.push(format!(
            "Get-CsPoolFabricState: pool {pool} has missing replicas"
        ));
    }
    if !me_active {
        problems.push(format!(
            "Get-CsPoolFabricState: {} holds no active replica (failed over, or its services are stopped)",
            server.fqdn
        ));
    }
    if problems.is_empty() {
        outcome.output.push_str(&format!(
            "\nGet-CsPoolFabricState: pool {pool} healthy, {} of {} Front End servers active",
            members.iter().filter(|m| m.active).count(),
            members.len()
        ));
    } else if outcome.exit_code == 0 {
        *outcome = fail(format!(
            "verification failed on {}:\n{}",
            server.fqdn,
            problems
                .iter()
                .map(|p| format!("- {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    } else {
        for p in problems {
            outcome.output.push_str(&format!("\n- {p}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_counts_the_first_servers_only() {
        // The table itself is tested where it lives (sfbpatch_topology::quorum).
        // Eight servers: four of the first seven.
        let mut active = vec![true; 8];
        for a in active.iter_mut().take(4) {
            *a = false;
        }
        assert!(!has_quorum(&active));
        active[0] = true;
        assert!(has_quorum(&active));
    }

    #[test]
    fn routing_groups_live_on_three_distinct_servers() {
        for n in 1..10 {
            for g in 0..n * GROUPS_PER_SERVER {
                let r = replicas(g, n);
                assert_eq!(r.len(), n.min(3));
                let mut d = r.clone();
                d.dedup();
                assert_eq!(d.len(), r.len());
            }
        }
    }

    fn pool(active: &[bool]) -> Vec<Member> {
        active
            .iter()
            .enumerate()
            .map(|(i, a)| Member {
                id: i as i64,
                fqdn: format!("fe{i}"),
                active: *a,
                dropped: false,
            })
            .collect()
    }

    #[test]
    fn leaving_is_refused_when_a_group_or_quorum_would_be_lost() {
        assert!(leaving_refused(&pool(&[true, true, true]), 0).is_none());
        // fe1 is out: groups on fe0, fe1, fe2 still have fe2, but quorum of 3 needs 2.
        let why = leaving_refused(&pool(&[true, false, true]), 0).unwrap();
        assert!(
            why.contains("routing group") || why.contains("quorum"),
            "{why}"
        );
        assert!(leaving_refused(&pool(&[true]), 0).unwrap().contains("only"));
        // Two servers: the other one keeps every group and quorum (1 of 2).
        assert!(leaving_refused(&pool(&[true, true]), 1).is_none());
    }
}

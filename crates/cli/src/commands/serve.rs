//! `sfbpatch serve`, and `apply --serve` / `resume --serve`: the live web dashboard
//! (`sfbpatch-serve`), given everything it needs from here: the store to open, how to judge a
//! run's state, the token, who actions are recorded as asked by.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::anyhow;
use sfbpatch_engine::{RunRecord, RunState, Store, StoreError};
use sfbpatch_serve::{Config, ServeError};

use crate::cli::ServeArgs;
use crate::exit::{CmdResult, Exit, Failure};
use crate::output;

use super::apply::{open_existing_store, operator_name};
use super::status::effective_state;

fn failure(e: ServeError) -> Failure {
    if e.is_usage() {
        Failure::bad_input(e)
    } else {
        Failure::internal(e)
    }
}

/// The run's state as `status` shows it (a running run whose controller is gone was
/// interrupted).
fn state_of(run: &RunRecord, store: &dyn Store) -> Result<RunState, StoreError> {
    effective_state(run, store).map_err(|f| StoreError::Query(format!("{:#}", f.error)))
}

fn config(
    state: &str,
    listen: SocketAddr,
    token: Option<String>,
    allow_actions: bool,
    operator: String,
) -> Config {
    let location = state.to_string();
    Config {
        listen,
        token,
        allow_actions,
        operator,
        open_store: Arc::new(move || sfbpatch_store::open_existing(&location)),
        state_of: Arc::new(state_of),
    }
}

/// The token of `--token` or the first line of `--token-file`.
fn token(args: &ServeArgs) -> Result<Option<String>, Failure> {
    if let Some(t) = &args.token {
        return Ok(Some(t.clone()));
    }
    let Some(path) = &args.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::bad_input(anyhow!(
            "--token-file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(Failure::bad_input(anyhow!(
            "--token-file {}: its first line is empty",
            path.display()
        )));
    }
    Ok(Some(token))
}

pub fn run(args: ServeArgs) -> CmdResult {
    let token = token(&args)?;
    let bound = sfbpatch_serve::bind(config(
        &args.state.state,
        args.listen,
        token,
        args.allow_actions,
        args.operator.clone().unwrap_or_else(operator_name),
    ))
    .map_err(failure)?;
    // Refused before serving when there is no store to read.
    let location = open_existing_store(&args.state.state)?.location();
    output::note(&format!(
        "serving the runs of {location} on http://{}/{}",
        bound.addr(),
        if args.allow_actions {
            " (actions allowed)"
        } else {
            ""
        }
    ));
    bound.serve().map_err(failure)?;
    Ok(Exit::Success)
}

/// Starts the dashboard, without actions, beside a run of this process; prints its address.
pub fn beside_run(state: &str, listen: SocketAddr) -> Result<(), Failure> {
    check_beside(listen)?;
    let bound = sfbpatch_serve::bind(config(state, listen, None, false, operator_name()))
        .map_err(failure)?;
    output::note(&format!("live dashboard: http://{}/", bound.addr()));
    // The server lives as long as the process; the run never waits on it.
    drop(bound.spawn());
    Ok(())
}

/// `--serve ADDR` beside a run takes no token: loopback only. Checked before anything opens.
pub fn check_beside(listen: SocketAddr) -> Result<(), Failure> {
    if !listen.ip().is_loopback() {
        return Err(Failure::bad_input(anyhow!(
            "--serve {listen}: the dashboard beside a run listens on loopback only; for another \
             address run `sfbpatch serve --listen {listen} --token-file FILE` beside it [SFB-W001]"
        )));
    }
    Ok(())
}

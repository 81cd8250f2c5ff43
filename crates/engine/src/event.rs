//! Typed events: the engine's only way of telling anyone what happens. The CLI draws progress
//! bars and text from them, `--format jsonl` streams them, reports are built from the journal
//! they mirror.

use serde::Serialize;
use sfbpatch_plan::StepId;

use crate::store::{RunId, RunState, ServerOutcome};
use crate::target::Millis;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum Event {
    RunStarted {
        run: RunId,
        servers: usize,
        resumed: bool,
        /// When the run was created (before any resume), on the target's clock: offsets shown
        /// to people count from it.
        run_created_at: Millis,
        /// Whether the target's clock is the wall clock (Unix milliseconds: real servers) or
        /// the lab's simulated clock.
        wall_clock: bool,
        at: Millis,
    },
    ServerStarted {
        server: String,
        pool: String,
        predicted_outage_ms: Millis,
        /// Predicted time from the server's start to its end (earlier runs' step durations).
        predicted_duration_ms: Millis,
        /// The run's outage budget, for renderers that show how close an outage is to it.
        outage_budget_ms: Millis,
        at: Millis,
    },
    StepStarted {
        server: String,
        step: StepId,
        attempt: u32,
        command: Option<String>,
        at: Millis,
    },
    StepFinished {
        server: String,
        step: StepId,
        attempt: u32,
        exit_code: Option<i32>,
        succeeded: bool,
        duration_ms: Millis,
        at: Millis,
    },
    /// A step's outcome was unknown (crash, lost connection); the probe decided.
    StepProbed {
        server: String,
        step: StepId,
        done: bool,
        /// The step's command is still running on the server (it is waited for).
        running: bool,
        at: Millis,
    },
    StepRetrying {
        server: String,
        step: StepId,
        attempt: u32,
        wait_ms: Millis,
        reason: String,
        /// When the retry was decided: the instant of the server's step result or probe that
        /// led to it.
        at: Millis,
    },
    Rebooted {
        server: String,
        at: Millis,
    },
    OutageStarted {
        server: String,
        pool: String,
        at: Millis,
    },
    OutageEnded {
        server: String,
        pool: String,
        duration_ms: Millis,
        at: Millis,
    },
    /// The outage has lasted longer than the budget: users of the pool may be in resiliency
    /// mode.
    OutageBudgetExceeded {
        server: String,
        pool: String,
        budget_ms: Millis,
        elapsed_ms: Millis,
        at: Millis,
    },
    Recovered {
        server: String,
        output: String,
        at: Millis,
    },
    ServerFinished {
        server: String,
        pool: String,
        outcome: ServerOutcome,
        reason: Option<String>,
        outage_ms: Option<Millis>,
        at: Millis,
    },
    /// The target's clock, about once a second of wall-clock time while a run goes on in real
    /// time (not in simulated time): renderers tick outage clocks with it. Not journalled.
    Tick {
        at: Millis,
    },
    /// The run was asked to stop (Ctrl-C): no new server starts, no server goes out of service;
    /// servers inside their outage window finish.
    StopRequested {
        reason: String,
        at: Millis,
    },
    /// The canary wave finished; later waves wait for `sfbpatch approve`.
    AwaitingApproval {
        run: RunId,
        wave: u32,
        at: Millis,
    },
    /// No pending server's predicted completion fits a maintenance window any more.
    WindowClosed {
        pending: usize,
        at: Millis,
    },
    /// A step inside a users-facing outage window starts with less outage budget left than it
    /// is predicted to take: its timeout is cut to what is left, and the pool's users may pass
    /// the 30-minute line.
    OutageBudgetAtRisk {
        server: String,
        pool: String,
        step: StepId,
        budget_left_ms: Millis,
        predicted_ms: Millis,
        at: Millis,
    },
    /// `Test-CsDatabase` over every SQL Server after the last server: how many databases were
    /// read, and those behind their expected version (`server\instance database: installed
    /// X, expected Y`).
    DatabasesChecked {
        checked: usize,
        behind: Vec<String>,
        at: Millis,
    },
    /// The state store cannot be reached: every server is held at its next step boundary
    /// (nothing runs that cannot be journalled first) while the engine tries again.
    StoreUnreachable {
        error: String,
        /// How long the store has been unreachable (wall clock).
        waited_ms: Millis,
        /// Servers held: started and not finished.
        held: usize,
        /// Of those, the ones inside their outage window.
        in_outage: Vec<String>,
    },
    /// The state store answers again; the run goes on.
    StoreReachable {
        after_ms: Millis,
    },
    RunFinished {
        run: RunId,
        state: RunState,
        at: Millis,
    },
}

impl Event {
    /// When it happened, on the target's clock; `None` for the store's events, which are on
    /// the controller's wall clock.
    pub fn at(&self) -> Option<Millis> {
        match self {
            Event::RunStarted { at, .. }
            | Event::ServerStarted { at, .. }
            | Event::StepStarted { at, .. }
            | Event::StepFinished { at, .. }
            | Event::StepProbed { at, .. }
            | Event::StepRetrying { at, .. }
            | Event::Rebooted { at, .. }
            | Event::OutageStarted { at, .. }
            | Event::OutageEnded { at, .. }
            | Event::OutageBudgetExceeded { at, .. }
            | Event::Recovered { at, .. }
            | Event::ServerFinished { at, .. }
            | Event::Tick { at }
            | Event::StopRequested { at, .. }
            | Event::AwaitingApproval { at, .. }
            | Event::WindowClosed { at, .. }
            | Event::OutageBudgetAtRisk { at, .. }
            | Event::DatabasesChecked { at, .. }
            | Event::RunFinished { at, .. } => Some(*at),
            Event::StoreUnreachable { .. } | Event::StoreReachable { .. } => None,
        }
    }
}

/// Receives the engine's events. Implemented by the CLI's renderers.
pub trait Observer {
    fn on_event(&mut self, event: &Event);
}

/// Discards every event.
pub struct NoObserver;

impl Observer for NoObserver {
    fn on_event(&mut self, _: &Event) {}
}

impl<F: FnMut(&Event)> Observer for F {
    fn on_event(&mut self, event: &Event) {
        self(event)
    }
}

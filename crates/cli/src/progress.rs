//! Renderers of the engine's events: progress bars on a terminal, plain lines elsewhere, JSON
//! lines for other tools. The engine knows none of them.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sfbpatch_engine::{Event, Observer, ServerOutcome};

use crate::cli::RunFormat;
use crate::output::{clock, minutes};

pub fn observer(format: RunFormat, color: bool) -> Box<dyn Observer> {
    match format {
        RunFormat::Jsonl => Box::new(JsonLines),
        _ if std::io::stderr().is_terminal() => Box::new(Bars::new(color)),
        _ => Box::new(Lines),
    }
}

/// Every event as one JSON object per line on stdout.
pub struct JsonLines;

impl Observer for JsonLines {
    fn on_event(&mut self, event: &Event) {
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// One line per notable event on stderr, for logs and pipes.
pub struct Lines;

impl Observer for Lines {
    fn on_event(&mut self, event: &Event) {
        if let Some(line) = describe(event) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// The plain-text form of an event, or `None` for events only bars show.
pub fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            run,
            servers,
            resumed,
            at,
        } => format!(
            "{} run {run}: {} {servers} server(s)",
            clock(*at),
            if *resumed { "resuming" } else { "patching" }
        ),
        Event::ServerStarted {
            server,
            pool,
            predicted_outage_ms,
            at,
            ..
        } => format!(
            "{} {server}: started (pool {pool}, predicted outage {})",
            clock(*at),
            minutes(*predicted_outage_ms)
        ),
        Event::StepStarted { .. } => return None,
        Event::StepFinished {
            server,
            step,
            attempt,
            exit_code,
            succeeded,
            duration_ms,
            at,
        } => format!(
            "{} {server}: {step} {}{} ({})",
            clock(*at),
            if *succeeded { "ok" } else { "FAILED" },
            match (exit_code, attempt) {
                (Some(c), 1) if *c != 0 => format!(", exit {c}"),
                (Some(c), a) if *a > 1 => format!(", exit {c}, attempt {a}"),
                (None, _) => ", outcome unknown".to_string(),
                _ => String::new(),
            },
            minutes(*duration_ms)
        ),
        Event::StepProbed {
            server,
            step,
            done,
            running,
            at,
        } => format!(
            "{} {server}: {step} probed: {}",
            clock(*at),
            if *done {
                "already done, not repeated"
            } else if *running {
                "still running on the server"
            } else {
                "not done"
            }
        ),
        Event::StepRetrying {
            server,
            step,
            attempt,
            wait_ms,
            reason,
        } => format!(
            "{server}: {step} will retry (attempt {attempt}) in {}: {reason}",
            minutes(*wait_ms)
        ),
        Event::Rebooted { server, at } => format!("{} {server}: rebooted", clock(*at)),
        Event::StoreUnreachable {
            error,
            waited_ms,
            held,
            in_outage,
        } => format!(
            "warning: state store unreachable for {:.0} s, holding {held} server(s){}: {error}",
            *waited_ms as f64 / 1000.0,
            if in_outage.is_empty() {
                String::new()
            } else {
                format!(" ({} inside their outage window)", in_outage.join(", "))
            }
        ),
        Event::StoreReachable { after_ms } => format!(
            "state store reachable again after {:.0} s; the run goes on",
            *after_ms as f64 / 1000.0
        ),
        Event::OutageBudgetAtRisk {
            server,
            pool,
            step,
            budget_left_ms,
            predicted_ms,
            at,
        } => format!(
            "{} warning: {server}: {step} is predicted to take {} but the outage budget leaves {}; users of pool {pool} may pass the 30-minute line (the step's timeout is cut to what is left)",
            clock(*at),
            minutes(*predicted_ms),
            minutes(*budget_left_ms)
        ),
        Event::DatabasesChecked {
            checked,
            behind,
            at,
        } if behind.is_empty() => format!(
            "{} Test-CsDatabase: all {checked} databases of the deployment at their expected version",
            clock(*at)
        ),
        Event::DatabasesChecked { behind, at, .. } => format!(
            "{} Test-CsDatabase: {} database(s) behind their expected version: {}",
            clock(*at),
            behind.len(),
            behind.join("; ")
        ),
        Event::OutageStarted { server, pool, at } => {
            format!("{} {server}: outage window opens (pool {pool})", clock(*at))
        }
        Event::OutageEnded {
            server,
            duration_ms,
            at,
            ..
        } => format!(
            "{} {server}: outage window closed after {}",
            clock(*at),
            minutes(*duration_ms)
        ),
        Event::OutageBudgetExceeded {
            server,
            pool,
            budget_ms,
            elapsed_ms,
            at,
        } => format!(
            "{} warning: {server}: outage {} exceeds the budget {}; users of pool {pool} may be in resiliency mode",
            clock(*at),
            minutes(*elapsed_ms),
            minutes(*budget_ms)
        ),
        Event::Recovered { server, at, .. } => format!(
            "{} {server}: recovery ran (W3SVC and services started where possible)",
            clock(*at)
        ),
        Event::ServerFinished {
            server,
            outcome,
            reason,
            outage_ms,
            at,
            ..
        } => format!(
            "{} {server}: {}{}{}",
            clock(*at),
            match outcome {
                ServerOutcome::Succeeded => "succeeded",
                ServerOutcome::Failed => "FAILED",
                ServerOutcome::Skipped => "skipped",
                ServerOutcome::AlreadyCurrent => "already current: nothing to do",
            },
            outage_ms
                .map(|o| format!(", outage {}", minutes(o)))
                .unwrap_or_default(),
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        Event::AwaitingApproval { run, wave, at } => format!(
            "{} run {run}: wave {} finished; the next waves wait for `sfbpatch approve {run}`",
            clock(*at),
            wave + 1
        ),
        Event::WindowClosed { pending, at } => format!(
            "{} the maintenance window cannot fit another server; {pending} server(s) left for `sfbpatch resume` in the next window",
            clock(*at)
        ),
        Event::RunFinished { run, state, at } => {
            format!("{} run {run} {}", clock(*at), state.as_str())
        }
    })
}

/// A progress bar per server on stderr: its step, and the outage clock, which turns amber once
/// the outage passes 80 % of the outage budget and red past it.
pub struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    outage_start: HashMap<String, u64>,
    budget: u64,
    color: bool,
}

impl Bars {
    fn new(color: bool) -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
            outage_start: HashMap::new(),
            budget: 30 * 60_000,
            color,
        }
    }

    fn bar(&mut self, server: &str) -> &ProgressBar {
        let multi = &self.multi;
        self.bars.entry(server.to_string()).or_insert_with(|| {
            let style =
                ProgressStyle::with_template("{prefix:<34} [{bar:22}] {pos:>2}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> ");
            let bar = multi.add(ProgressBar::new(11).with_style(style));
            bar.set_prefix(server.to_string());
            bar
        })
    }

    fn outage_clock(&self, server: &str, now: u64) -> String {
        let Some(start) = self.outage_start.get(server) else {
            return String::new();
        };
        let ms = now.saturating_sub(*start);
        let s = ms / 1000;
        let text = format!(" outage {:02}:{:02}", s / 60, s % 60);
        if !self.color {
            return text;
        }
        if ms >= self.budget {
            format!("\x1b[31m{text}\x1b[0m")
        } else if ms >= self.budget / 5 * 4 {
            format!("\x1b[33m{text}\x1b[0m")
        } else {
            text
        }
    }
}

impl Observer for Bars {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::ServerStarted {
                server,
                outage_budget_ms,
                ..
            } => {
                self.budget = *outage_budget_ms;
                self.bar(server).set_message("starting");
            }
            Event::OutageStarted { server, at, .. } => {
                self.outage_start.insert(server.clone(), *at);
            }
            Event::StepStarted {
                server, step, at, ..
            } => {
                let clock = self.outage_clock(server, *at);
                self.bar(server).set_message(format!("{step}{clock}"));
            }
            Event::StepFinished {
                server,
                succeeded: true,
                ..
            }
            | Event::StepProbed {
                server, done: true, ..
            } => {
                self.bar(server).inc(1);
            }
            Event::OutageEnded { server, .. } => {
                self.outage_start.remove(server);
            }
            Event::ServerFinished { server, .. } => {
                let line = describe(event).unwrap_or_default();
                let bar = self.bar(server).clone();
                bar.finish_with_message(
                    line.split_once(": ")
                        .map(|(_, rest)| rest.to_string())
                        .unwrap_or(line),
                );
            }
            Event::OutageBudgetExceeded { .. } | Event::Recovered { .. } => {
                if let Some(line) = describe(event) {
                    let _ = self.multi.println(line);
                }
            }
            _ => {}
        }
    }
}

//! Renderers of the engine's events: progress bars on a terminal, plain lines elsewhere, JSON
//! lines for other tools. The engine knows none of them.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sfbpatch_engine::{Event, Observer, ServerOutcome};

use crate::cli::RunFormat;
use crate::output::{minutes, offset as clock, stopwatch};

pub fn observer(format: RunFormat, color: bool) -> Box<dyn Observer> {
    // A dumb terminal cannot redraw: plain lines, warnings included.
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    match format {
        RunFormat::Jsonl => Box::new(JsonLines),
        // `-q`: failures only, as plain lines.
        _ if crate::output::quiet() => Box::new(Lines {
            failures_only: true,
            ..Lines::default()
        }),
        _ if std::io::stderr().is_terminal() && !dumb => Box::new(Bars::new(color)),
        _ => Box::new(Lines::default()),
    }
}

/// Every event as one JSON object per line on stdout.
pub struct JsonLines;

impl Observer for JsonLines {
    fn on_event(&mut self, event: &Event) {
        // The clock's tick is for live displays, not for a record of the run.
        if matches!(event, Event::Tick { .. }) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// One line per notable event on stderr, for logs and pipes.
#[derive(Default)]
pub struct Lines {
    times: Times,
    /// Only failed steps and failed servers (`-q`).
    failures_only: bool,
}

impl Observer for Lines {
    fn on_event(&mut self, event: &Event) {
        self.times.see(event);
        if self.failures_only && !is_failure(event) {
            return;
        }
        if let Some(line) = describe(event, &self.times) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

fn is_failure(event: &Event) -> bool {
    matches!(
        event,
        Event::StepFinished {
            succeeded: false,
            ..
        } | Event::ServerFinished {
            outcome: ServerOutcome::Failed,
            ..
        }
    )
}

/// How event times are shown: offsets from the run's creation (`T+hh:mm:ss`), and for real
/// servers, whose clock is the wall clock, the local time first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Times {
    start: u64,
    wall: bool,
}

impl Times {
    fn see(&mut self, event: &Event) {
        if let Event::RunStarted {
            run_created_at,
            wall_clock,
            ..
        } = event
        {
            self.start = *run_created_at;
            self.wall = *wall_clock;
        }
    }

    fn at(&self, at: u64) -> String {
        let offset = clock(at.saturating_sub(self.start));
        if self.wall {
            format!("{} {offset}", crate::output::local_time_of_day(at))
        } else {
            offset
        }
    }
}

/// The plain-text form of an event, or `None` for events only bars show.
pub fn describe(event: &Event, times: &Times) -> Option<String> {
    let clock = |at: &u64| times.at(*at);
    Some(match event {
        Event::RunStarted {
            run,
            servers,
            resumed,
            at,
            ..
        } => format!(
            "{} run {run}: {} {servers} server(s)",
            clock(at),
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
            clock(at),
            minutes(*predicted_outage_ms)
        ),
        Event::StepStarted { .. } | Event::Tick { .. } => return None,
        Event::StopRequested { at, reason } => format!(
            "{} interrupted{}: no new server starts and none goes out of service; servers in their outage finish (Ctrl-C again to stop now, then `sfbpatch resume`)",
            clock(at),
            // A stop asked through the store (`sfbpatch serve`) names who asked.
            if reason.ends_with("asked the run to stop") {
                format!(" ({})", crate::output::printable(reason))
            } else {
                String::new()
            }
        ),
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
            clock(at),
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
            clock(at),
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
            at,
        } => format!(
            "{} {server}: {step} will retry (attempt {attempt}) in {}: {reason}",
            clock(at),
            minutes(*wait_ms)
        ),
        Event::Rebooted { server, at } => format!("{} {server}: rebooted", clock(at)),
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
            clock(at),
            minutes(*predicted_ms),
            minutes(*budget_left_ms)
        ),
        Event::DatabasesChecked {
            checked,
            behind,
            at,
        } if behind.is_empty() => format!(
            "{} Test-CsDatabase: all {checked} databases of the deployment at their expected version",
            clock(at)
        ),
        Event::DatabasesChecked { behind, at, .. } => format!(
            "{} Test-CsDatabase: {} database(s) behind their expected version: {}",
            clock(at),
            behind.len(),
            behind.join("; ")
        ),
        Event::OutageStarted { server, pool, at } => {
            format!("{} {server}: outage window opens (pool {pool})", clock(at))
        }
        Event::OutageEnded {
            server,
            duration_ms,
            at,
            ..
        } => format!(
            "{} {server}: outage window closed after {}",
            clock(at),
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
            clock(at),
            minutes(*elapsed_ms),
            minutes(*budget_ms)
        ),
        Event::Recovered { server, at, .. } => format!(
            "{} {server}: recovery ran (W3SVC and services started where possible)",
            clock(at)
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
            clock(at),
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
            clock(at),
            wave + 1
        ),
        Event::WindowClosed { pending, at } => format!(
            "{} the maintenance window cannot fit another server; {pending} server(s) left for `sfbpatch resume` in the next window",
            clock(at)
        ),
        Event::RunFinished { run, state, at } => {
            format!("{} run {run} {}", clock(at), state.as_str())
        }
    })
}

/// The terminal's size (rows, columns), for keeping the bars inside it (24 x 80 when it cannot
/// be told).
fn terminal_size() -> (usize, usize) {
    console::Term::stderr()
        .size_checked()
        .map_or((24, 80), |(rows, cols)| {
            (usize::from(rows), usize::from(cols))
        })
}

/// On a terminal: a bar per running server (its step and its outage clock, which ticks every
/// second and turns amber at 80 % of the outage budget and red past it) above one overall line
/// (done, failed, in outage, elapsed, an estimate of what is left). Finished servers and
/// warnings are printed above the bars and scroll away as cargo's and nextest's do; the bars
/// never take more rows than the terminal has, and no line is wider than it.
///
/// The bars and the overall line are one block, drawn whole: no frame shows a bar that the
/// overall line does not count.
pub struct Bars {
    block: ProgressBar,
    /// Running servers with a bar, in the order they started.
    bars: Vec<String>,
    /// Running servers without a bar (no room on the terminal), in the order they started.
    waiting: Vec<String>,
    /// Per running server: its current step.
    step: HashMap<String, String>,
    /// Per running server: steps done, of how many.
    progress: HashMap<String, u64>,
    outage_start: HashMap<String, u64>,
    /// Per running server: when it started and its predicted duration.
    predicted: HashMap<String, (u64, u64)>,
    /// Predicted durations of every server started so far: their sum and count.
    predicted_sum: u64,
    started: usize,
    budget: u64,
    color: bool,
    rows: usize,
    cols: usize,
    /// The name column: as wide as the longest name seen (up to 64).
    width: usize,
    total: usize,
    done: usize,
    failed: usize,
    started_at: Option<u64>,
    now: u64,
    times: Times,
}

/// Steps a server's bar counts (the longest procedure).
const BAR_STEPS: u64 = 14;
/// Cells of a bar between its brackets.
const BAR_CELLS: u64 = 22;

impl Bars {
    fn new(color: bool) -> Self {
        let block = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(ProgressStyle::with_template("{msg}").expect("valid template"));
        let (rows, cols) = terminal_size();
        Bars {
            block,
            bars: Vec::new(),
            waiting: Vec::new(),
            step: HashMap::new(),
            progress: HashMap::new(),
            outage_start: HashMap::new(),
            predicted: HashMap::new(),
            predicted_sum: 0,
            started: 0,
            budget: 30 * 60_000,
            color,
            rows,
            cols,
            width: 24,
            total: 0,
            done: 0,
            failed: 0,
            started_at: None,
            now: 0,
            times: Times::default(),
        }
    }

    /// How many server bars fit: the terminal's rows less the overall line, a line printed
    /// above the block, and the cursor's line.
    fn room(&self) -> usize {
        self.rows.saturating_sub(3).max(1)
    }

    fn started(&mut self, server: &str) {
        self.width = self.width.max(server.chars().count()).min(64);
        if self.bars.len() < self.room() {
            self.bars.push(server.to_string());
        } else {
            self.waiting.push(server.to_string());
        }
    }

    /// The server's bar goes; the first waiting server takes its row.
    fn finished(&mut self, server: &str) {
        self.waiting.retain(|s| s != server);
        if let Some(i) = self.bars.iter().position(|s| s == server) {
            self.bars.remove(i);
            if !self.waiting.is_empty() {
                let next = self.waiting.remove(0);
                self.bars.push(next);
            }
        }
        self.step.remove(server);
        self.predicted.remove(server);
        self.progress.remove(server);
        self.outage_start.remove(server);
    }

    fn outage_clock(&self, server: &str) -> String {
        let Some(start) = self.outage_start.get(server) else {
            return String::new();
        };
        let ms = self.now.saturating_sub(*start);
        let text = format!(" outage {}", stopwatch(ms));
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

    /// A server's line: name, bar, steps done, step and outage clock.
    fn bar_line(&self, server: &str) -> String {
        let done = self
            .progress
            .get(server)
            .copied()
            .unwrap_or(0)
            .min(BAR_STEPS);
        let filled = (done * BAR_CELLS / BAR_STEPS) as usize;
        let mut bar = "=".repeat(filled);
        if filled < BAR_CELLS as usize {
            bar.push(if done > 0 { '>' } else { ' ' });
            bar.push_str(&" ".repeat(BAR_CELLS as usize - filled - 1));
        }
        let step = self.step.get(server).map_or("starting", String::as_str);
        format!(
            "{:<width$} [{bar}] {done:>2}/{BAR_STEPS} {step}{}",
            crate::output::printable(server),
            self.outage_clock(server),
            width = self.width
        )
    }

    /// The overall line.
    fn overall_line(&self) -> String {
        let in_outage = self.outage_start.len();
        let running = self.bars.len() + self.waiting.len();
        let elapsed = self.now.saturating_sub(self.started_at.unwrap_or(self.now));
        let mut line = format!(
            "{}/{} done, {} failed, {running} running, {in_outage} in outage · elapsed {}",
            self.done,
            self.total,
            self.failed,
            clock(elapsed)
        );
        if !self.waiting.is_empty() {
            line.push_str(&format!(
                " · {} running without a bar here",
                self.waiting.len()
            ));
        }
        if let Some(left) = self.estimate_left() {
            line.push_str(&format!(" · about {} left", minutes(left)));
        }
        line
    }

    /// The block at the current time, every line cut at the terminal's edge (a wrapped line
    /// would push the block off the screen).
    fn redraw(&mut self) {
        let edge = self.cols.saturating_sub(1).max(20);
        let mut block = String::new();
        for server in &self.bars {
            block.push_str(&console::truncate_str(&self.bar_line(server), edge, ""));
            block.push('\n');
        }
        block.push_str(&console::truncate_str(&self.overall_line(), edge, ""));
        self.block.set_message(block);
    }

    /// What is left, from the predictions: the running server predicted to end last, and the
    /// servers not started yet at the mean predicted duration, as many at once as run now.
    fn estimate_left(&self) -> Option<u64> {
        if self.started == 0 || self.done >= self.total {
            return None;
        }
        let running = self
            .predicted
            .values()
            .map(|(start, duration)| (start + duration).saturating_sub(self.now))
            .max()
            .unwrap_or(0);
        let unstarted = self.total.saturating_sub(self.started) as u64;
        let mean = self.predicted_sum / self.started as u64;
        let at_once = self.predicted.len().max(1) as u64;
        Some(running + unstarted.div_ceil(at_once) * mean)
    }

    fn print(&self, event: &Event) {
        if let Some(line) = describe(event, &self.times) {
            self.block.println(line);
        }
    }
}

impl Observer for Bars {
    fn on_event(&mut self, event: &Event) {
        if let Some(at) = event.at() {
            self.now = self.now.max(at);
        }
        self.times.see(event);
        match event {
            Event::RunStarted {
                servers,
                run_created_at,
                ..
            } => {
                self.total = *servers;
                self.started_at = Some(*run_created_at);
                self.print(event);
            }
            Event::ServerStarted {
                server,
                outage_budget_ms,
                predicted_duration_ms,
                at,
                ..
            } => {
                self.budget = *outage_budget_ms;
                self.started += 1;
                self.predicted_sum += predicted_duration_ms;
                self.predicted
                    .insert(server.clone(), (*at, *predicted_duration_ms));
                self.started(server);
            }
            Event::OutageStarted { server, at, .. } => {
                self.outage_start.insert(server.clone(), *at);
            }
            Event::StepStarted { server, step, .. } => {
                self.step.insert(server.clone(), step.to_string());
            }
            Event::StepFinished {
                server,
                succeeded: true,
                ..
            }
            | Event::StepProbed {
                server, done: true, ..
            } => {
                *self.progress.entry(server.clone()).or_default() += 1;
            }
            Event::StepRetrying { server, step, .. } => {
                self.step
                    .insert(server.clone(), format!("{step} (waiting to retry)"));
                self.print(event);
            }
            // A failed step is said; a step not done runs again; neither moves the bar.
            Event::StepFinished { .. } => self.print(event),
            Event::StepProbed { .. } => {}
            Event::OutageEnded { server, .. } => {
                self.outage_start.remove(server);
            }
            Event::ServerFinished {
                server, outcome, ..
            } => {
                self.done += 1;
                if *outcome == ServerOutcome::Failed {
                    self.failed += 1;
                }
                self.finished(server);
                self.print(event);
            }
            Event::Tick { .. } => {}
            Event::RunFinished { .. } => {
                self.block.finish_and_clear();
                self.print(event);
                return;
            }
            _ => self.print(event),
        }
        self.redraw();
    }
}

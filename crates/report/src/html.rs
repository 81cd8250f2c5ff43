//! The report as one self-contained HTML page: inline CSS and SVG, no script, no font or image
//! from anywhere, a Content-Security-Policy that forbids loading anything. Every text that came
//! from a server or a file is escaped. Colours always come with a second cue (step numbers,
//! hatching, labels), and the page prints: on A4 or Letter, the main report takes a few pages
//! (no server's row or failure is split across two), and the audit trail is an appendix, a
//! closed `<details>` that prints only when opened.
//!
//! Times: a run over SSH ran on the wall clock, so every time is shown as a date and time with
//! its UTC offset in the zone given to [`render_html_in`] (the zone is named once in the header)
//! and as `T+hh:mm:ss` since the run started. A lab run shows offsets only, labelled "lab time".

use std::fmt::{self, Write as _};

use jiff::tz::TimeZone;
use sfbpatch_engine::{ServerState, StepState, human};
use sfbpatch_plan::StepId;

use crate::model::*;

/// Renders the report as one HTML document (well-formed XML as well as HTML5), with the times
/// of a run over SSH in this computer's time zone ([`TimeZone::system`]).
pub fn render_html(report: &Report) -> String {
    render_html_in(report, &TimeZone::system())
}

/// Renders the report as one HTML document (well-formed XML as well as HTML5), with the times
/// of a run over SSH in `zone`. Pure: the same report and zone give the same page.
pub fn render_html_in(report: &Report, zone: &TimeZone) -> String {
    let mut out = String::with_capacity(64 * 1024 + report.audit.len() * 512);
    let times = Times::new(&report.run, zone);
    page(report, &times, &mut out).expect("writing to a String cannot fail");
    out
}

/// The style rules of the timeline's note below its heading.
macro_rules! note_css {
    () => {
        "p.note { margin: 2px 0 8px; color: #444; font-size: 13px; }\n"
    };
}

/// The style rules the timeline's pictures need (screen).
macro_rules! timeline_css {
    () => {
        concat!(
            ".scroll { overflow-x: auto; }\n",
            "svg.timeline { display: block; width: 100%; min-width: 760px; height: auto; border: 1px solid #ddd;\n",
            "  background: #fff; margin: 0 0 6px; }\n",
            "svg.defs { position: absolute; width: 0; height: 0; overflow: hidden; }\n",
        )
    };
}

/// The style rules [`render_timeline`]'s fragment needs, for a page that shows it (the live
/// dashboard): the same rules as the report's own page.
pub const TIMELINE_CSS: &str = concat!(note_css!(), timeline_css!());

/// Renders the report's timeline alone, as in [`render_html`] (times of a run over SSH in this
/// computer's time zone): the contents of the page's `<section id="timeline">` (its heading,
/// note, pictures and legend), for a page of its own to place (the live dashboard). Every text
/// from a server or a file is escaped, as in the page; it needs [`TIMELINE_CSS`].
pub fn render_timeline(report: &Report) -> String {
    render_timeline_in(report, &TimeZone::system())
}

/// [`render_timeline`] with the times of a run over SSH in `zone`. Pure.
pub fn render_timeline_in(report: &Report, zone: &TimeZone) -> String {
    let mut out = String::with_capacity(16 * 1024 + report.servers.len() * 2048);
    let times = Times::new(&report.run, zone);
    timeline_contents(report, &times, &mut out).expect("writing to a String cannot fail");
    out
}

const CSS: &str = concat!(
    r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: system-ui, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
  margin: 24px; color: #1b1b1b; background: #fff; font-size: 14px; line-height: 1.4; }
header { border-bottom: 2px solid #333; padding-bottom: 8px; margin-bottom: 16px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 18px; margin: 24px 0 6px; border-bottom: 1px solid #ccc; padding-bottom: 2px; }
h3 { font-size: 15px; margin: 14px 0 4px; }
h4 { font-size: 13px; margin: 8px 0 2px; }
p.package { margin: 0 0 8px; font-size: 15px; }
"#,
    note_css!(),
    r#"dl.facts { display: flex; flex-wrap: wrap; gap: 4px 28px; margin: 0; }
dl.facts div { min-width: 120px; }
dt { font-size: 12px; color: #555; }
dd { margin: 0; font-weight: 600; }
.state { display: inline-block; padding: 0 8px; border: 1px solid #888; border-radius: 10px;
  font-size: 13px; font-weight: 600; vertical-align: middle; background: #f1f1f1; }
.state-succeeded, .state-already-current { background: #e6f4ea; border-color: #2e7d32; }
.state-failed { background: #fce8e6; border-color: #b00020; }
.state-skipped, .state-interrupted, .state-awaiting-approval { background: #fff4e0; border-color: #b26a00; }
.state-running, .state-pending { background: #e8f0fe; border-color: #1a56b0; }
.rel, .sub { display: block; color: #555; font-size: 0.85em; font-weight: 400; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid #c8c8c8; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-size: 13px; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.when { font-variant-numeric: tabular-nums; }
td.name { min-width: 9em; }
.nw { white-space: nowrap; }
td.state-cell .reason { max-width: 14em; }
td.outage { text-align: right; font-variant-numeric: tabular-nums; }
td.build { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.code, td.out { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 12px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
tr.impact td { background: #fdecea; }
td.impact { font-weight: 700; color: #8a0016; }
td.over { font-weight: 700; color: #8a0016; }
pre { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 12px; white-space: pre-wrap;
  overflow-wrap: anywhere; background: #f7f7f7; border: 1px solid #ddd; padding: 6px 8px; margin: 2px 0 8px; }
code { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 0.92em; background: #f3f3f3;
  padding: 0 3px; overflow-wrap: anywhere; }
article.failure { border-left: 4px solid #b00020; padding: 2px 0 2px 12px; margin: 10px 0; }
article.failure.skipped { border-left-color: #b26a00; }
ul.hints { margin: 2px 0 8px; padding-left: 20px; }
ul.hints li { margin: 2px 0; }
"#,
    timeline_css!(),
    r#"details.appendix { margin-top: 24px; border-top: 2px solid #333; padding-top: 4px; }
details.appendix > summary { cursor: pointer; }
details.appendix > summary h2 { display: inline; border: 0; margin: 0; }
details.pool { margin: 2px 0; }
details.pool > summary { cursor: pointer; padding: 3px 0; }
footer { margin-top: 24px; font-size: 12px; color: #555; border-top: 1px solid #ccc; padding-top: 6px; }
@media (max-width: 600px) { body { margin: 10px; } }
@page { margin: 12mm 11mm; }
@media print {
  body { margin: 0; font-size: 8.5pt; line-height: 1.3; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  header { margin-bottom: 8px; padding-bottom: 4px; }
  h1 { font-size: 14pt; }
  h2 { font-size: 11pt; margin: 10px 0 3px; }
  h3 { font-size: 9.5pt; margin: 6px 0 2px; }
  h4 { font-size: 8.5pt; margin: 4px 0 1px; }
  p.package { font-size: 9.5pt; margin-bottom: 4px; }
  p.note { font-size: 7.5pt; margin: 1px 0 4px; }
  dl.facts { gap: 2px 16px; }
  dt { font-size: 7pt; }
  .state { font-size: 7.5pt; padding: 0 5px; }
  th, td { font-size: 7.5pt; padding: 1px 4px; }
  td.code, td.out, pre, code { font-size: 7pt; }
  pre { padding: 2px 4px; margin: 1px 0 4px; }
  table { margin: 3px 0 6px; }
  .scroll { overflow: visible; }
  svg.timeline { min-width: 0; margin: 0 0 4px; }
  svg.timeline, tr, article.failure, ul.hints li { break-inside: avoid; }
  h2, h3, h4 { break-after: avoid; }
  footer { margin-top: 8px; font-size: 7pt; }
}
"#
);

fn page(r: &Report, t: &Times, out: &mut String) -> fmt::Result {
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">")?;
    writeln!(out, "<head>")?;
    writeln!(out, "<meta charset=\"utf-8\"/>")?;
    // Nothing may be loaded from anywhere: the page is the whole report.
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"/>"
    )?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
    )?;
    writeln!(
        out,
        "<title>sfbpatch report: run {} ({})</title>",
        r.run.id,
        r.run.state.as_str()
    )?;
    writeln!(out, "<style>{CSS}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    header(r, t, out)?;
    writeln!(out, "<main>")?;
    timeline(r, t, out)?;
    impact(r, out)?;
    servers(r, t, out)?;
    failures(r, t, out)?;
    databases(r, out)?;
    writeln!(out, "</main>")?;
    audit(r, t, out)?;
    writeln!(
        out,
        "<footer>Built by sfbpatch from run {}'s write-ahead journal and audit log. {}</footer>",
        r.run.id,
        if t.wall {
            "Times are the servers' wall clock, shown in the time zone named in the header, and \
             as T+hh:mm:ss since the run started."
        } else {
            "Times are lab time: the lab's virtual clock, as T+hh:mm:ss since the run started."
        }
    )?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

fn header(r: &Report, t: &Times, out: &mut String) -> fmt::Result {
    let run = &r.run;
    writeln!(out, "<header>")?;
    writeln!(
        out,
        "<h1>sfbpatch run {} {}</h1>",
        run.id,
        state_badge(run.state.as_str())
    )?;
    writeln!(
        out,
        "<p class=\"package\">{} &#183; build {}</p>",
        Esc(&run.package),
        Esc(&run.package_version)
    )?;
    writeln!(out, "<dl class=\"facts\">")?;
    fact(out, "Started", &t.stamp(0.0))?;
    fact(
        out,
        if run.state.is_finished() {
            "Ended"
        } else {
            "Journal ends"
        },
        &t.full(run.makespan_seconds),
    )?;
    if t.wall {
        fact(out, "Time zone", &t.zone_label())?;
    } else {
        fact(
            out,
            "Clock",
            "lab time: the lab's virtual clock, as offsets from the run's start (its records \
             hold no calendar date)",
        )?;
    }
    fact(
        out,
        "Makespan",
        &format!(
            "{} ({})",
            minutes(run.makespan_seconds),
            duration(run.makespan_seconds)
        ),
    )?;
    let mut counts: Vec<(ServerState, usize)> = Vec::new();
    for s in &r.servers {
        match counts.iter_mut().find(|(st, _)| *st == s.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((s.state, 1)),
        }
    }
    counts.sort_by_key(|(st, _)| state_rank(*st));
    let counts: Vec<String> = counts
        .iter()
        .map(|(st, n)| format!("{n} {}", st.as_str()))
        .collect();
    fact(
        out,
        "Servers",
        &format!("{}: {}", r.servers.len(), counts.join(", ")),
    )?;
    let affected: Vec<&PoolReport> = r
        .pools
        .iter()
        .filter(|p| p.resiliency_seconds > 0.0)
        .collect();
    let impact = if affected.is_empty() {
        "none".to_string()
    } else {
        format!(
            "{} pool(s), {} in all",
            affected.len(),
            minutes(affected.iter().map(|p| p.resiliency_seconds).sum())
        )
    };
    fact(out, "Users in resiliency mode", &impact)?;
    if !run.approvals.is_empty() {
        let approvals: Vec<String> = run.approvals.iter().map(|a| approval_text(a, t)).collect();
        fact(out, "Approved", &approvals.join("; "))?;
    }
    fact(out, "Operator", &run.operator)?;
    fact(out, "Topology", &run.topology_origin)?;
    fact(out, "Target", &target(&run.target))?;
    writeln!(out, "</dl>")?;
    writeln!(out, "</header>")
}

/// `canary wave` for the engine's wave 0, `wave N` (counted from 1) for the others.
fn wave_name(wave: u32) -> String {
    if wave == 0 {
        "canary wave".to_string()
    } else {
        format!("wave {}", wave + 1)
    }
}

/// `canary wave approved by NAME at TIME`.
fn approval_text(a: &Approval, t: &Times) -> String {
    format!(
        "{} approved by {} at {}",
        wave_name(a.wave),
        a.by,
        t.full(a.at_seconds)
    )
}

fn fact(out: &mut String, name: &str, value: &str) -> fmt::Result {
    writeln!(
        out,
        "<div><dt>{}</dt><dd>{}</dd></div>",
        Esc(name),
        Esc(value)
    )
}

fn target(value: &serde_json::Value) -> String {
    let Some(map) = value.as_object() else {
        return "unknown".to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(kind) = map.get("kind").and_then(|k| k.as_str()) {
        parts.push(kind.to_string());
    }
    for (key, v) in map.iter().filter(|(k, _)| *k != "kind") {
        if let Some(s) = v.as_str() {
            parts.push(format!("{key} {s}"));
        }
    }
    parts.join(", ")
}

fn state_badge(state: &str) -> String {
    format!("<span class=\"state state-{0}\">{0}</span>", Esc(state))
}

fn state_rank(s: ServerState) -> u8 {
    match s {
        ServerState::Succeeded | ServerState::AlreadyCurrent => 0,
        ServerState::Failed => 1,
        ServerState::Skipped => 2,
        ServerState::Running => 3,
        ServerState::Pending => 4,
    }
}

// ---------------------------------------------------------------------------------------------
// Times

/// How the page shows a time given in seconds since the run started.
struct Times {
    /// The journal is on the wall clock (a run over SSH): times have dates.
    wall: bool,
    /// The run's start, Unix milliseconds (wall clock only).
    origin_ms: f64,
    zone: TimeZone,
}

impl Times {
    fn new(run: &RunSummary, zone: &TimeZone) -> Self {
        Times {
            wall: run.clock == ClockKind::Wall,
            origin_ms: run.created_at_seconds * 1000.0,
            zone: zone.clone(),
        }
    }

    fn zoned(&self, seconds: f64) -> Option<jiff::ZonedDateTime> {
        if !self.wall {
            return None;
        }
        let ms = (self.origin_ms + seconds.max(0.0) * 1000.0).round();
        if !ms.is_finite() || ms < 0.0 || ms > i64::MAX as f64 {
            return None;
        }
        jiff::Timestamp::from_millisecond(ms as i64)
            .ok()
            .map(|ts| ts.to_zoned_datetime(self.zone.clone()))
    }

    /// `2026-12-04 22:03:15 +01:00` on the wall clock, `T+01:02:03` in lab time.
    fn stamp(&self, seconds: f64) -> String {
        match self.zoned(seconds) {
            Some(z) => z.strftime("%Y-%m-%d %H:%M:%S %:z").to_string(),
            None => clock(seconds),
        }
    }

    /// `2026-12-04 22:03:15 +01:00 (T+01:02:03)`, or `T+01:02:03 lab time`.
    fn full(&self, seconds: f64) -> String {
        if self.wall {
            format!("{} ({})", self.stamp(seconds), clock(seconds))
        } else {
            format!("{} lab time", clock(seconds))
        }
    }

    /// Table cell content (HTML): the date and time with the offset since the start below it,
    /// or the offset alone in lab time.
    fn cell(&self, seconds: f64) -> String {
        match self.zoned(seconds) {
            Some(z) => format!(
                "<time datetime=\"{}\"><span class=\"nw\">{}</span> <span class=\"nw\">{}</span></time>\
                 <span class=\"rel\">{}</span>",
                z.timestamp(),
                z.strftime("%Y-%m-%d"),
                z.strftime("%H:%M:%S %:z"),
                clock(seconds)
            ),
            None => clock(seconds),
        }
    }

    /// Seconds from the run's start to the first time of day that is a whole multiple of
    /// `tick` seconds (22:15 for 15 minutes), on the wall clock.
    fn to_round_time(&self, tick: f64) -> Option<f64> {
        let z = self.zoned(0.0)?;
        let of_day = f64::from(z.hour()) * 3600.0
            + f64::from(z.minute()) * 60.0
            + f64::from(z.second())
            + f64::from(z.millisecond()) / 1000.0;
        let step = tick.min(86_400.0);
        Some((of_day / step).ceil() * step - of_day)
    }

    /// The axis label of a round time: `22:15`, or the date at midnight and for ticks of a
    /// day or more.
    fn tick_label(&self, seconds: f64, tick: f64) -> Option<String> {
        let z = self.zoned(seconds)?;
        let midnight = z.hour() == 0 && z.minute() == 0;
        Some(if tick >= 86_400.0 || midnight {
            z.strftime("%m-%d").to_string()
        } else {
            z.strftime("%H:%M").to_string()
        })
    }

    /// `UTC+01:00` at the run's start.
    fn offset_at_start(&self) -> String {
        self.zoned(0.0)
            .map(|z| format!("UTC{}", z.strftime("%:z")))
            .unwrap_or_else(|| "UTC".to_string())
    }

    /// The zone, named once in the header.
    fn zone_label(&self) -> String {
        let offset = self.offset_at_start();
        match self.zone.iana_name() {
            Some(name) if name != "Etc/Unknown" => format!(
                "{name}, {offset} at the start (each time shows its offset; T+ counts from \
                 the run's start)"
            ),
            _ => format!("{offset} (each time shows its offset; T+ counts from the run's start)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The timeline

// Sized for a page: at A4's or Letter's printable width (about 700 CSS pixels) the picture is
// drawn at 0.7 of these units, and its text stays legible.
const WIDTH: f64 = 1000.0;
const LABEL: f64 = 210.0;
const RIGHT: f64 = 16.0;
const PLOT: f64 = WIDTH - LABEL - RIGHT;
const TOP: f64 = 34.0;
const ROW: f64 = 54.0;
const AXIS_BOTTOM: f64 = 26.0;
const LEGEND_COLUMNS: usize = 4;
const LEGEND_ROW: f64 = 22.0;
/// Rows per picture: each picture fits one printed page, so no row is split across two.
const ROWS_PER_CHART: usize = 16;
/// Step boxes: their top and height within a row.
const BOX_TOP: f64 = 17.0;
const BOX_HEIGHT: f64 = 18.0;
/// The baseline of the numbers of boxes too narrow to hold them, below the boxes.
const LANE_BASELINE: f64 = 47.0;

const FAILED_RED: &str = "#b00020";
/// A white outline behind text drawn over boxes and lines, so that it stays legible.
const HALO: &str =
    " stroke=\"#ffffff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"";

/// Fill colour per step kind: light tones, so that the black step numbers on them stay legible.
fn step_colour(id: StepId) -> &'static str {
    match id {
        StepId::CheckAdminRole => "#d9d9d9",
        StepId::StageUpdate => "#80b1d3",
        StepId::CheckFabricState => "#e0ecf4",
        StepId::Failover => "#fbb4ae",
        StepId::Failback => "#decbe4",
        StepId::StopCsServices => "#fdb462",
        StepId::StopW3svc => "#ffed6f",
        StepId::CloseManagementShells => "#fccde5",
        StepId::InstallUpdate => "#bc80bd",
        StepId::StopCsServicesGac => "#8dd3c7",
        StepId::StartW3svc => "#ccebc5",
        StepId::UpdateDatabases => "#b3de69",
        StepId::StartCsServices => "#bebada",
        StepId::Verify => "#e5c494",
    }
}

const DEFS: &str = concat!(
    "<defs>\n",
    "<pattern id=\"p-outage\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">",
    "<rect width=\"8\" height=\"8\" fill=\"#fff1e0\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#f3c99c\" stroke-width=\"3\"/></pattern>\n",
    "<pattern id=\"p-over\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(-45)\">",
    "<rect width=\"8\" height=\"8\" fill=\"#fbd3d3\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#e57373\" stroke-width=\"3\"/></pattern>\n",
    "<pattern id=\"p-failed\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">",
    "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#b00020\" stroke-width=\"2.5\"/></pattern>\n",
    "<pattern id=\"p-reboot\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\">",
    "<rect width=\"6\" height=\"6\" fill=\"#ffffff\"/><circle cx=\"3\" cy=\"3\" r=\"1.4\" fill=\"#555555\"/></pattern>\n",
    "<pattern id=\"p-recovery\" width=\"7\" height=\"7\" patternUnits=\"userSpaceOnUse\">",
    "<rect width=\"7\" height=\"7\" fill=\"#e3f2fd\"/><path d=\"M0 0 L7 7 M7 0 L0 7\" stroke=\"#1a56b0\" stroke-width=\"1\"/></pattern>\n",
    "</defs>\n"
);

/// The time axis: seconds to x, with a round end.
struct Scale {
    end: f64,
    tick: f64,
}

impl Scale {
    fn new(r: &Report) -> Self {
        let limit = r.run.resiliency_after_seconds;
        let mut end = r.run.makespan_seconds.max(60.0);
        for s in &r.servers {
            for t in [s.end_seconds, s.outage_end_seconds].into_iter().flatten() {
                end = end.max(t);
            }
            if let Some(start) = s.outage_start_seconds {
                end = end.max(start + limit);
            }
        }
        let minutes = end / 60.0;
        let tick = [
            1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 180.0, 240.0, 360.0, 720.0, 1440.0,
        ]
        .into_iter()
        .find(|t| minutes / t <= 14.0)
        .unwrap_or_else(|| (minutes / 14.0 / 1440.0).ceil() * 1440.0);
        let end = (minutes / tick).ceil().max(1.0) * tick * 60.0;
        Scale {
            end,
            tick: tick * 60.0,
        }
    }

    fn x(&self, seconds: f64) -> f64 {
        LABEL + seconds.clamp(0.0, self.end) / self.end * PLOT
    }

    /// x and width of a span, at least `min` wide so that instants stay visible.
    fn span(&self, start: f64, end: f64, min: f64) -> (f64, f64) {
        let x0 = self.x(start);
        let x1 = self.x(end.max(start));
        (x0, (x1 - x0).max(min))
    }
}

fn timeline(r: &Report, t: &Times, out: &mut String) -> fmt::Result {
    writeln!(out, "<section id=\"timeline\">")?;
    timeline_contents(r, t, out)?;
    writeln!(out, "</section>")
}

/// What the timeline's section holds: its heading, note, pictures and legend.
fn timeline_contents(r: &Report, t: &Times, out: &mut String) -> fmt::Result {
    let scale = Scale::new(r);
    writeln!(out, "<h2>Timeline</h2>")?;
    writeln!(
        out,
        "<p class=\"note\">One row per server, in plan order; {}. Each step is a box numbered as \
         in the procedure (a box too narrow for its number has it just below). The hatched band \
         is the server's outage window (from stopping its services to starting them again); the \
         dashed line marks {} after the window opened: a pool whose back end is still \
         unavailable then has its users in resiliency mode.</p>",
        if t.wall {
            "the time of day above, minutes since the run started below"
        } else {
            "minutes since the run started (lab time)"
        },
        whole_minutes(r.run.resiliency_after_seconds)
    )?;
    // The patterns every picture of the page fills with, defined once.
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"defs\" width=\"0\" height=\"0\" aria-hidden=\"true\">"
    )?;
    out.push_str(DEFS);
    writeln!(out, "</svg>")?;
    if is_large(r) {
        let sites = groups(r, |s| &s.site);
        let charts = sites.len().div_ceil(ROWS_PER_CHART).max(1);
        for chart in 0..charts {
            let first = chart * ROWS_PER_CHART;
            let rows = &sites[first..(first + ROWS_PER_CHART).min(sites.len())];
            let part = Part {
                chart,
                charts,
                rows: rows.len(),
                total: sites.len(),
                what: "site(s)",
            };
            chart_svg(r, t, &scale, &part, out, |i, out| {
                site_row(r, t, &rows[i], i, &scale, out)
            })?;
        }
    } else {
        let charts = r.servers.len().div_ceil(ROWS_PER_CHART).max(1);
        for chart in 0..charts {
            let first = chart * ROWS_PER_CHART;
            let rows: Vec<&ServerReport> =
                r.servers.iter().skip(first).take(ROWS_PER_CHART).collect();
            let part = Part {
                chart,
                charts,
                rows: rows.len(),
                total: r.servers.len(),
                what: "server(s)",
            };
            chart_svg(r, t, &scale, &part, out, |i, out| {
                row(r, t, rows[i], i, &scale, out)
            })?;
        }
    }
    legend_svg(&legend_items(), out)
}

/// Above this many servers the page aggregates: the timeline has one row per site, and the
/// servers are listed in one closed section per pool. Below it (the usual night), one timeline
/// row per server.
pub(crate) const LARGE_REPORT_SERVERS: usize = 200;

/// The audit trail shows at most this many lines; the rest are in `report --format json`.
pub(crate) const AUDIT_LINES_SHOWN: usize = 1000;

fn is_large(r: &Report) -> bool {
    r.servers.len() > LARGE_REPORT_SERVERS
}

/// Servers grouped by `key` (a site, a pool), in the order the groups first appear in the plan.
struct Group<'a> {
    name: &'a str,
    servers: Vec<&'a ServerReport>,
}

fn groups<'a>(r: &'a Report, key: impl Fn(&'a ServerReport) -> &'a str) -> Vec<Group<'a>> {
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<Group<'a>> = Vec::new();
    for s in &r.servers {
        let name = key(s);
        let i = *index.entry(name.to_ascii_lowercase()).or_insert_with(|| {
            out.push(Group {
                name,
                servers: Vec::new(),
            });
            out.len() - 1
        });
        out[i].servers.push(s);
    }
    out
}

/// The union of the servers' outage windows (open ones up to `now`), as sorted disjoint spans;
/// spans less than `join` seconds apart (a pixel of the picture) are drawn as one.
fn outage_union(servers: &[&ServerReport], now: f64, join: f64) -> Vec<(f64, f64)> {
    let mut spans: Vec<(f64, f64)> = servers
        .iter()
        .filter_map(|s| {
            let start = s.outage_start_seconds?;
            Some((start, s.outage_end_seconds.unwrap_or(now).max(start)))
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 + join => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// One row of the aggregated timeline: a site's servers from the first start to the last end,
/// and the times any of them was out of service (hatched), with counts in the label.
fn site_row(
    r: &Report,
    t: &Times,
    g: &Group<'_>,
    index: usize,
    scale: &Scale,
    out: &mut String,
) -> fmt::Result {
    let y = TOP + index as f64 * ROW;
    let now = r.run.makespan_seconds;
    let limit = r.run.resiliency_after_seconds;
    let failed = g
        .servers
        .iter()
        .filter(|s| s.state == ServerState::Failed)
        .count();
    let over = g
        .servers
        .iter()
        .filter(|s| s.outage_seconds.is_some_and(|o| o > limit))
        .count();
    let pools = groups_count(&g.servers);
    writeln!(out, "<g class=\"row site\" data-site=\"{}\">", Esc(g.name))?;
    let shade = if index.is_multiple_of(2) {
        "#fafafa"
    } else {
        "#ffffff"
    };
    writeln!(
        out,
        "<rect x=\"0\" y=\"{y:.1}\" width=\"{WIDTH}\" height=\"{ROW}\" fill=\"{shade}\"/>\
         <line x1=\"0\" y1=\"{0:.1}\" x2=\"{WIDTH}\" y2=\"{0:.1}\" stroke=\"#e6e6e6\"/>",
        y + ROW
    )?;
    let summary = format!(
        "{} server(s) \u{b7} {pools} pool(s){}{}",
        g.servers.len(),
        if failed > 0 {
            format!(" \u{b7} \u{2717} {failed} failed")
        } else {
            String::new()
        },
        if over > 0 {
            format!(" \u{b7} {over} over {}", minutes(limit))
        } else {
            String::new()
        }
    );
    writeln!(
        out,
        "<text x=\"10\" y=\"{:.1}\" font-size=\"12\" font-weight=\"700\" fill=\"#111\"><title>site {}</title>{}</text>\
         <text x=\"10\" y=\"{:.1}\" font-size=\"10.5\" fill=\"{}\"><title>{}</title>{}</text>",
        y + 22.0,
        Esc(g.name),
        Esc(&ellipsize(g.name, 29)),
        y + 38.0,
        if failed > 0 { FAILED_RED } else { "#555" },
        Esc(&summary),
        Esc(&ellipsize(&summary, 32))
    )?;
    let starts = g.servers.iter().filter_map(|s| s.start_seconds);
    if let Some(first) = starts.reduce(f64::min) {
        let last = g
            .servers
            .iter()
            .map(|s| s.end_seconds.unwrap_or(now))
            .fold(first, f64::max);
        let (x, w) = scale.span(first, last, 1.5);
        writeln!(
            out,
            "<rect class=\"span\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BOX_HEIGHT:.1}\" \
             fill=\"#e8eef7\" stroke=\"#8aa4c8\" stroke-width=\"1\"><title>site {}: servers at work \
             from {} to {}</title></rect>",
            y + BOX_TOP,
            Esc(g.name),
            t.full(first),
            t.full(last)
        )?;
    }
    let windows = g
        .servers
        .iter()
        .filter(|s| s.outage_start_seconds.is_some())
        .count();
    if windows > 0 {
        let outage: f64 = g.servers.iter().filter_map(|s| s.outage_seconds).sum();
        writeln!(
            out,
            "<g class=\"outage\"><title>site {}: {windows} outage window(s), {} in all; hatched: \
             while any of them was open</title>",
            Esc(g.name),
            minutes(outage)
        )?;
        for (start, end) in outage_union(&g.servers, now, scale.end / PLOT) {
            let (x, w) = scale.span(start, end, 1.5);
            writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" \
                 fill=\"url(#p-outage)\" stroke=\"#c77c2e\" stroke-width=\"1\"/>",
                y + 3.0,
                BOX_TOP - 5.0,
            )?;
        }
        writeln!(out, "</g>")?;
    }
    writeln!(out, "</g>")
}

/// How many pools the servers belong to.
fn groups_count(servers: &[&ServerReport]) -> usize {
    let mut pools: Vec<String> = servers
        .iter()
        .map(|s| s.pool.to_ascii_lowercase())
        .collect();
    pools.sort_unstable();
    pools.dedup();
    pools.len()
}

/// Which part of the timeline one picture is.
struct Part {
    chart: usize,
    charts: usize,
    rows: usize,
    total: usize,
    what: &'static str,
}

/// One picture of the timeline: the axis, `rows`, the approvals and the end of the journal.
fn chart_svg(
    r: &Report,
    t: &Times,
    scale: &Scale,
    part: &Part,
    out: &mut String,
    mut row: impl FnMut(usize, &mut String) -> fmt::Result,
) -> fmt::Result {
    let Part {
        chart,
        charts,
        rows,
        total,
        what,
    } = *part;
    let plot_bottom = TOP + rows as f64 * ROW;
    let height = plot_bottom + AXIS_BOTTOM;
    let now = r.run.makespan_seconds;
    writeln!(out, "<div class=\"scroll\">")?;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-labelledby=\"timeline-title-{chart}\" \
         font-family=\"system-ui, 'Segoe UI', 'DejaVu Sans', Arial, sans-serif\" font-size=\"11\">"
    )?;
    writeln!(
        out,
        "<title id=\"timeline-title-{chart}\">Timeline of run {}{}: {rows} of {total} {what} over {}</title>",
        r.run.id,
        if charts > 1 {
            format!(", part {} of {charts}", chart + 1)
        } else {
            String::new()
        },
        minutes(now)
    )?;

    // Axis: grid lines; the time of day (wall clock) or minutes above, minutes below.
    writeln!(out, "<g class=\"axis\">")?;
    writeln!(
        out,
        "<text x=\"12\" y=\"{:.1}\" fill=\"#444\">{}</text>",
        TOP - 12.0,
        if t.wall {
            format!("time of day ({})", t.offset_at_start())
        } else {
            "minutes since start (lab time)".to_string()
        }
    )?;
    if t.wall {
        writeln!(
            out,
            "<text x=\"12\" y=\"{:.1}\" fill=\"#444\">minutes since start</text>",
            plot_bottom + 17.0
        )?;
    }
    let mut at = 0.0;
    while at <= scale.end + 0.5 {
        let x = scale.x(at);
        let m = format!("{}", (at / 60.0).round());
        writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e2e2e2\" stroke-width=\"1\"/>",
            TOP - 4.0,
            plot_bottom + 4.0
        )?;
        let mut labels = vec![(plot_bottom + 17.0, m.clone())];
        if !t.wall {
            labels.push((TOP - 12.0, m));
        }
        for (y, label) in labels {
            writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"#444\">{label}</text>"
            )?;
        }
        at += scale.tick;
    }
    // On the wall clock, the time of day above, at round times (22:00, 22:15, ...).
    if let Some(first) = t.to_round_time(scale.tick) {
        let mut at = first;
        while at <= scale.end + 0.5 {
            let x = scale.x(at);
            if let Some(label) = t.tick_label(at, scale.tick) {
                writeln!(
                    out,
                    "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-width=\"1\"/>\
                     <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">{label}</text>",
                    TOP - 8.0,
                    TOP - 3.0,
                    TOP - 12.0
                )?;
            }
            at += scale.tick;
        }
    }
    writeln!(out, "</g>")?;

    for row_index in 0..rows {
        row(row_index, out)?;
    }

    for a in &r.run.approvals {
        let x = scale.x(a.at_seconds);
        writeln!(
            out,
            "<g class=\"approval\"><line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{plot_bottom:.1}\" \
             stroke=\"#2e7d32\" stroke-width=\"1.5\" stroke-dasharray=\"6 2 1 2\"><title>{}</title></line>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#2e7d32\"{HALO}>{} approved by {}</text></g>",
            TOP - 4.0,
            Esc(&approval_text(a, t)),
            x + 4.0,
            TOP - 2.0,
            wave_name(a.wave),
            Esc(&a.by)
        )?;
    }

    if !r.run.state.is_finished() {
        let x = scale.x(now);
        writeln!(
            out,
            "<g class=\"now\"><line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{plot_bottom:.1}\" \
             stroke=\"#1a56b0\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#1a56b0\"{HALO}>journal ends ({})</text></g>",
            TOP - 4.0,
            x + 4.0,
            TOP - 2.0,
            Esc(r.run.state.as_str())
        )?;
    }
    writeln!(out, "</svg>")?;
    writeln!(out, "</div>")
}

fn row(
    r: &Report,
    t: &Times,
    s: &ServerReport,
    index: usize,
    scale: &Scale,
    out: &mut String,
) -> fmt::Result {
    let y = TOP + index as f64 * ROW;
    let now = r.run.makespan_seconds;
    let limit = r.run.resiliency_after_seconds;
    writeln!(
        out,
        "<g class=\"row\" data-server=\"{}\" data-state=\"{}\">",
        Esc(&s.fqdn),
        s.state.as_str()
    )?;
    let shade = if index.is_multiple_of(2) {
        "#fafafa"
    } else {
        "#ffffff"
    };
    writeln!(
        out,
        "<rect x=\"0\" y=\"{y:.1}\" width=\"{WIDTH}\" height=\"{ROW}\" fill=\"{shade}\"/>"
    )?;
    writeln!(
        out,
        "<line x1=\"0\" y1=\"{0:.1}\" x2=\"{WIDTH}\" y2=\"{0:.1}\" stroke=\"#e6e6e6\"/>",
        y + ROW
    )?;
    writeln!(
        out,
        "<text x=\"10\" y=\"{:.1}\" font-size=\"12\" font-weight=\"700\" fill=\"#111\"><title>{}</title>{}</text>",
        y + 22.0,
        Esc(&s.fqdn),
        Esc(&ellipsize(&s.fqdn, 29))
    )?;
    let marker = match s.state {
        ServerState::Failed => "\u{2717} ",
        ServerState::Skipped => "\u{2013} ",
        _ => "",
    };
    writeln!(
        out,
        "<text x=\"10\" y=\"{:.1}\" font-size=\"10.5\" fill=\"{}\"><title>{}</title>{}</text>",
        y + 38.0,
        if s.state == ServerState::Failed {
            FAILED_RED
        } else {
            "#555"
        },
        Esc(&s.pool),
        Esc(&ellipsize(
            &format!("{marker}{} \u{b7} {}", s.state.as_str(), s.pool),
            32
        ))
    )?;

    // The outage window, the part beyond the limit, the 30-minute line.
    if let Some(start) = s.outage_start_seconds {
        let end = s.outage_end_seconds.unwrap_or(now);
        let (x, w) = scale.span(start, end, 1.5);
        let length = s.outage_seconds.unwrap_or(end - start);
        writeln!(
            out,
            "<rect class=\"outage\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" \
             fill=\"url(#p-outage)\" stroke=\"#c77c2e\" stroke-width=\"1\"><title>{}: outage window \
             {} ({} to {}){}</title></rect>",
            y + 3.0,
            ROW - 6.0,
            Esc(&s.fqdn),
            minutes(length),
            t.full(start),
            if s.outage_end_seconds.is_some() {
                t.full(end)
            } else {
                "still open".to_string()
            },
            if length > limit {
                format!(", {} beyond {}", minutes(length - limit), minutes(limit))
            } else {
                String::new()
            }
        )?;
        if end > start + limit {
            let (x, w) = scale.span(start + limit, end, 1.0);
            writeln!(
                out,
                "<rect class=\"over\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" \
                 fill=\"url(#p-over)\" stroke=\"{FAILED_RED}\" stroke-width=\"1\"/>",
                y + 3.0,
                ROW - 6.0
            )?;
        }
        let lx = scale.x(start + limit);
        writeln!(
            out,
            "<line class=\"limit-30\" x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{lx:.1}\" y2=\"{:.1}\" \
             stroke=\"{FAILED_RED}\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"><title>{} after \
             the outage window opened</title></line>",
            y + 1.0,
            y + ROW - 1.0,
            minutes(limit)
        )?;
        let outage_label = format!("outage {}", minutes(length));
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9.5\" fill=\"#7a3b00\"{HALO}>{outage_label}</text>",
            x + 3.0,
            y + 12.5,
        )?;
        // "30 min" beside its line, unless the outage label is there (the legend says it).
        if lx > x + 8.0 + text_width(&outage_label, 9.5) {
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"{FAILED_RED}\"{HALO}>{}</text>",
                lx + 3.0,
                y + 12.5,
                Esc(&format!("{:.0} min", limit / 60.0))
            )?;
        }
    }

    // Steps, reboots, the recovery. Every step and reboot has its number (R for a reboot):
    // inside its box when the box is wide enough, else in a lane just below the boxes.
    let top = y + BOX_TOP;
    let height = BOX_HEIGHT;
    let mut last_x: Option<f64> = None;
    let mut lane: Vec<LaneLabel> = Vec::new();
    for st in &s.steps {
        let Some(start) = st.start_seconds else {
            continue;
        };
        let open = st.end_seconds.is_none();
        let end = st.end_seconds.unwrap_or(now);
        let (x, w) = scale.span(start, end, 1.5);
        last_x = Some(last_x.map_or(x + w, |l: f64| l.max(x + w)));
        let failed = st.state == StepState::Failed;
        let unknown = matches!(st.state, StepState::Unknown | StepState::Running);
        let (stroke, dash) = if failed {
            (FAILED_RED, "")
        } else if unknown {
            ("#1a56b0", " stroke-dasharray=\"3 2\"")
        } else {
            ("#555555", "")
        };
        writeln!(
            out,
            "<rect class=\"step\" data-step=\"{}\" data-state=\"{}\" x=\"{x:.1}\" y=\"{top:.1}\" \
             width=\"{w:.1}\" height=\"{height}\" fill=\"{}\" stroke=\"{stroke}\" stroke-width=\"{}\"{dash}>\
             <title>{}</title></rect>",
            st.id.as_str(),
            st.state.as_str(),
            step_colour(st.id),
            if failed { 2 } else { 1 },
            Esc(&step_title(t, s, st, start, end, open))
        )?;
        if failed {
            writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{height}\" fill=\"url(#p-failed)\"/>"
            )?;
        }
        let number = st.id.number().to_string();
        if w >= text_width(&number, 10.0) + 4.0 {
            writeln!(
                out,
                "<text class=\"step-no\" data-step=\"{}\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                 font-size=\"10\" font-weight=\"700\" fill=\"#111\"{}>{number}</text>",
                st.id.as_str(),
                x + w / 2.0,
                top + 13.0,
                if failed { HALO } else { "" },
            )?;
        } else {
            lane.push(LaneLabel {
                text: number,
                step: Some(st.id),
                centre: x + w / 2.0,
                colour: if failed { FAILED_RED } else { "#111" },
            });
        }
    }
    for rb in &s.reboots {
        let (x, w) = scale.span(rb.start_seconds, rb.end_seconds, 1.5);
        last_x = Some(last_x.map_or(x + w, |l: f64| l.max(x + w)));
        writeln!(
            out,
            "<rect class=\"reboot\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{height}\" \
             fill=\"url(#p-reboot)\" stroke=\"#555555\"><title>{}: reboot, {} ({} to {})</title></rect>",
            Esc(&s.fqdn),
            minutes(rb.end_seconds - rb.start_seconds),
            t.full(rb.start_seconds),
            t.full(rb.end_seconds)
        )?;
        if w >= text_width("R", 10.0) + 4.0 {
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" font-weight=\"700\" fill=\"#111\"{HALO}>R</text>",
                x + w / 2.0,
                top + 13.0
            )?;
        } else {
            lane.push(LaneLabel {
                text: "R".to_string(),
                step: None,
                centre: x + w / 2.0,
                colour: "#111",
            });
        }
    }
    if let Some(rec) = &s.recovery {
        let (x, w) = scale.span(rec.start_seconds, rec.end_seconds, 1.5);
        last_x = Some(last_x.map_or(x + w, |l: f64| l.max(x + w)));
        writeln!(
            out,
            "<rect class=\"recovery\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{height}\" \
             fill=\"url(#p-recovery)\" stroke=\"#1a56b0\"><title>{}: recovery, {} ({} to {})</title></rect>",
            Esc(&s.fqdn),
            minutes(rec.end_seconds - rec.start_seconds),
            t.full(rec.start_seconds),
            t.full(rec.end_seconds)
        )?;
    }
    lane_labels(&mut lane, y, top + height, out)?;

    // What happened, in words, right of the row's last box.
    let note = match s.state {
        ServerState::Failed => {
            let step = s
                .steps
                .iter()
                .rev()
                .find(|st| st.state != StepState::Succeeded && st.start_seconds.is_some())
                .map(|st| st.id.as_str())
                .unwrap_or("a step");
            Some((
                format!(
                    "\u{2717} {step} failed{}",
                    if s.recovery.is_some() {
                        ", recovered"
                    } else {
                        ""
                    }
                ),
                FAILED_RED,
            ))
        }
        ServerState::AlreadyCurrent => Some((
            "already on the package's build: nothing ran".to_string(),
            "#555555",
        )),
        ServerState::Skipped => Some((
            format!(
                "skipped: {}",
                ellipsize(s.reason.as_deref().unwrap_or("not started"), 110)
            ),
            "#7a4a00",
        )),
        ServerState::Pending => Some(("not started".to_string(), "#555")),
        ServerState::Running => Some(("in progress".to_string(), "#1a56b0")),
        ServerState::Succeeded => None,
    };
    if let Some((text, colour)) = note {
        let x = last_x.map_or(LABEL + 4.0, |l| l + 5.0);
        // Keep the words inside the picture: right-aligned at the edge when the row is full.
        let (x, anchor) = if x > WIDTH - 160.0 {
            (WIDTH - 4.0, "end")
        } else {
            (x, "start")
        };
        writeln!(
            out,
            "<text class=\"row-note\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"10.5\" \
             font-weight=\"700\" fill=\"{colour}\"{HALO}>{}</text>",
            top + 13.0,
            Esc(&text)
        )?;
    }
    writeln!(out, "</g>")
}

fn step_title(
    t: &Times,
    s: &ServerReport,
    st: &StepReport,
    start: f64,
    end: f64,
    open: bool,
) -> String {
    let mut title = format!(
        "{}: {}. {} ({}), {} to {}",
        s.fqdn,
        st.id.number(),
        st.id.as_str(),
        st.state.as_str(),
        t.full(start),
        if open { "now".to_string() } else { t.full(end) }
    );
    title.push_str(&format!(", {}", minutes(end - start)));
    if st.attempts > 1 {
        title.push_str(&format!(", {} attempts", st.attempts));
    }
    if let Some(code) = st.exit_code {
        title.push_str(&format!(", exit code {code}"));
    }
    title
}

/// A number that did not fit in its box, drawn in the lane below the boxes.
struct LaneLabel {
    text: String,
    step: Option<StepId>,
    /// The centre of its box.
    centre: f64,
    colour: &'static str,
}

/// Draws the lane: each number under its box, moved right just as far as it must to keep
/// clear of the one before (with a leader line to its box when moved), and kept inside the
/// plot.
fn lane_labels(
    lane: &mut [LaneLabel],
    row_y: f64,
    boxes_bottom: f64,
    out: &mut String,
) -> fmt::Result {
    lane.sort_by(|a, b| a.centre.total_cmp(&b.centre));
    let font = 9.0;
    let gap = 2.0;
    let mut placed: Vec<f64> = Vec::with_capacity(lane.len());
    let mut right_edge = f64::NEG_INFINITY;
    for l in lane.iter() {
        let half = text_width(&l.text, font) / 2.0;
        let x = l.centre.max(right_edge + gap + half).max(LABEL + half);
        right_edge = x + half;
        placed.push(x);
    }
    // Shift the whole lane left if it runs past the plot's right edge.
    let overflow = right_edge - (WIDTH - 2.0);
    if overflow > 0.0 {
        for x in &mut placed {
            *x -= overflow;
        }
    }
    let baseline = row_y + LANE_BASELINE;
    for (l, x) in lane.iter().zip(placed) {
        if (x - l.centre).abs() > 1.5 {
            writeln!(
                out,
                "<line class=\"leader\" x1=\"{:.1}\" y1=\"{boxes_bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" \
                 stroke=\"#777\" stroke-width=\"0.8\"/>",
                l.centre,
                baseline - font + 1.0
            )?;
        }
        match l.step {
            Some(id) => writeln!(
                out,
                "<text class=\"step-no\" data-step=\"{}\" x=\"{x:.1}\" y=\"{baseline:.1}\" text-anchor=\"middle\" \
                 font-size=\"{font}\" font-weight=\"700\" fill=\"{}\"{HALO}>{}</text>",
                id.as_str(),
                l.colour,
                Esc(&l.text)
            )?,
            None => writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{baseline:.1}\" text-anchor=\"middle\" font-size=\"{font}\" \
                 font-weight=\"700\" fill=\"{}\"{HALO}>{}</text>",
                l.colour,
                Esc(&l.text)
            )?,
        }
    }
    Ok(())
}

/// The width of `text` in picture units at `font_size`: digits and most letters of the fonts
/// used are about 0.6 em wide in bold.
fn text_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * font_size * 0.62
}

enum Swatch {
    Step(StepId),
    Reboot,
    Recovery,
    Failed,
    Outage,
    Over,
    Limit,
}

fn legend_items() -> Vec<(Swatch, String)> {
    let mut items: Vec<(Swatch, String)> = StepId::ALL
        .into_iter()
        .map(|id| (Swatch::Step(id), format!("{} {}", id.number(), id.as_str())))
        .collect();
    items.push((Swatch::Reboot, "R reboot".to_string()));
    items.push((Swatch::Recovery, "recovery".to_string()));
    items.push((Swatch::Failed, "failed step".to_string()));
    items.push((Swatch::Outage, "outage window".to_string()));
    items.push((Swatch::Over, "beyond 30 minutes".to_string()));
    items.push((Swatch::Limit, "30 minutes after outage start".to_string()));
    items
}

/// The legend, a picture of its own below the timeline.
fn legend_svg(items: &[(Swatch, String)], out: &mut String) -> fmt::Result {
    let column = (WIDTH - 24.0) / LEGEND_COLUMNS as f64;
    let top = 8.0;
    let height = top + items.len().div_ceil(LEGEND_COLUMNS) as f64 * LEGEND_ROW + 4.0;
    writeln!(out, "<div class=\"scroll\">")?;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline legend-svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"Legend of the timeline\" \
         font-family=\"system-ui, 'Segoe UI', 'DejaVu Sans', Arial, sans-serif\" font-size=\"11\">"
    )?;
    writeln!(out, "<g class=\"legend\">")?;
    for (i, (swatch, label)) in items.iter().enumerate() {
        let x = 12.0 + (i % LEGEND_COLUMNS) as f64 * column;
        let y = top + (i / LEGEND_COLUMNS) as f64 * LEGEND_ROW;
        let rect = |fill: &str, stroke: &str| {
            format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"26\" height=\"14\" fill=\"{fill}\" stroke=\"{stroke}\"/>"
            )
        };
        match swatch {
            Swatch::Step(id) => {
                out.push_str(&rect(step_colour(*id), "#555555"));
                write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" font-weight=\"700\" fill=\"#111\">{}</text>",
                    x + 13.0,
                    y + 11.0,
                    id.number()
                )?;
            }
            Swatch::Reboot => out.push_str(&rect("url(#p-reboot)", "#555555")),
            Swatch::Recovery => out.push_str(&rect("url(#p-recovery)", "#1a56b0")),
            Swatch::Failed => {
                out.push_str(&rect("#ffffff", FAILED_RED));
                out.push_str(&rect("url(#p-failed)", FAILED_RED));
            }
            Swatch::Outage => out.push_str(&rect("url(#p-outage)", "#c77c2e")),
            Swatch::Over => out.push_str(&rect("url(#p-over)", FAILED_RED)),
            Swatch::Limit => write!(
                out,
                "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"{FAILED_RED}\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>",
                x + 13.0,
                y - 1.0,
                y + 15.0
            )?,
        }
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{}</text>",
            x + 32.0,
            y + 11.0,
            Esc(label)
        )?;
    }
    writeln!(out, "</g>")?;
    writeln!(out, "</svg>")?;
    writeln!(out, "</div>")
}

// ---------------------------------------------------------------------------------------------
// Tables

fn impact(r: &Report, out: &mut String) -> fmt::Result {
    let limit = r.run.resiliency_after_seconds;
    writeln!(out, "<section id=\"impact\">")?;
    writeln!(out, "<h2>User impact per pool</h2>")?;
    writeln!(
        out,
        "<p class=\"note\">A pool's back end is unavailable while all of its machines are out of \
         service at once (for an AlwaysOn availability group: every node). Users go into \
         resiliency mode for the part of an unavailability beyond {}: they keep basic functions \
         but cannot make persistent changes.</p>",
        whole_minutes(limit)
    )?;
    writeln!(
        out,
        "<table class=\"pools\">\n<thead><tr><th>Pool</th><th>Site</th><th>Front End servers \
         patched</th><th>Back end</th><th>Back-end servers</th><th>Back end unavailable</th>\
         <th>Longest</th><th>Users in resiliency mode</th></tr></thead>\n<tbody>"
    )?;
    for p in &r.pools {
        let hit = p.resiliency_seconds > 0.0;
        let longest = p.unavailable.iter().map(|i| i.seconds).fold(0.0, f64::max);
        writeln!(
            out,
            "<tr data-pool=\"{}\"{}><td class=\"name\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td>{}{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num{}\">{}</td></tr>",
            Esc(&p.fqdn),
            if hit { " class=\"impact\"" } else { "" },
            Name(&p.fqdn),
            Esc(&p.site),
            if p.front_ends.is_empty() {
                "\u{2013}".to_string()
            } else {
                format!("{}/{}", p.front_ends_patched, p.front_ends.len())
            },
            Name(&p.backend),
            if p.always_on { " (AlwaysOn)" } else { "" },
            Name(&p.servers.join(", ")),
            if p.unavailable.is_empty() {
                "never".to_string()
            } else {
                format!(
                    "{} in {} interval(s)",
                    minutes(p.unavailable_seconds),
                    p.unavailable.len()
                )
            },
            if p.unavailable.is_empty() {
                "\u{2013}".to_string()
            } else {
                minutes(longest)
            },
            if hit { " impact" } else { "" },
            if hit {
                format!("\u{26a0} yes: {}", minutes(p.resiliency_seconds))
            } else {
                "no".to_string()
            }
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    writeln!(out, "</section>")
}

fn servers(r: &Report, t: &Times, out: &mut String) -> fmt::Result {
    let limit = r.run.resiliency_after_seconds;
    writeln!(out, "<section id=\"servers\">")?;
    writeln!(out, "<h2>Servers</h2>")?;
    writeln!(
        out,
        "<p class=\"note\">Build before: what Get-CsServerPatchVersion showed in the pre-flight, \
         before anything changed. Build after: the package's build once verify saw it, or the \
         build before when nothing was installed.</p>"
    )?;
    if is_large(r) {
        writeln!(
            out,
            "<p class=\"note\">{} servers in {} pools: one section per pool, closed unless one \
             of its servers failed; open one to see its servers. Every server's steps are in \
             <code>sfbpatch report --format json</code>.</p>",
            r.servers.len(),
            r.pools
                .len()
                .max(groups_count(&r.servers.iter().collect::<Vec<_>>()))
        )?;
        for pool in groups(r, |s| &s.pool) {
            let failed = pool
                .servers
                .iter()
                .filter(|s| s.state == ServerState::Failed)
                .count();
            let longest = pool
                .servers
                .iter()
                .filter_map(|s| s.outage_seconds)
                .fold(None, |m: Option<f64>, o| Some(m.map_or(o, |m| m.max(o))));
            writeln!(
                out,
                "<details class=\"pool\" data-pool=\"{}\"{}><summary>{} \u{2013} {} server(s){}{}</summary>",
                Esc(pool.name),
                if failed > 0 { " open=\"open\"" } else { "" },
                Name(pool.name),
                pool.servers.len(),
                if failed > 0 {
                    format!(", \u{2717} {failed} failed")
                } else {
                    String::new()
                },
                match longest {
                    Some(o) => format!(", longest outage window {}", minutes(o)),
                    None => String::new(),
                }
            )?;
            server_table(pool.servers.iter().copied(), true, t, limit, out)?;
            writeln!(out, "</details>")?;
        }
    } else {
        server_table(r.servers.iter(), false, t, limit, out)?;
    }
    writeln!(out, "</section>")
}

/// The servers' table: one row each.
fn server_table<'a>(
    servers: impl Iterator<Item = &'a ServerReport>,
    in_pool: bool,
    t: &Times,
    limit: f64,
    out: &mut String,
) -> fmt::Result {
    writeln!(
        out,
        "<table class=\"servers\">\n<thead><tr><th>{}</th><th>State</th>\
         <th>Build before</th><th>Build after</th><th>Started</th><th>Finished</th>\
         <th>Outage window</th><th>Steps done</th></tr></thead>\n<tbody>",
        if in_pool { "Server" } else { "Server (pool)" }
    )?;
    for s in servers {
        let done = s
            .steps
            .iter()
            .filter(|st| st.state == StepState::Succeeded)
            .count();
        let over = s.outage_seconds.is_some_and(|o| o > limit);
        writeln!(
            out,
            "<tr data-server=\"{}\"><td class=\"name\">{}</td>\
             <td class=\"state-cell\">{}{}</td><td class=\"build\">{}</td><td class=\"build\">{}</td>\
             <td class=\"when\">{}</td><td class=\"when\">{}</td><td class=\"outage{}\">{}</td>\
             <td class=\"num\">{done} of {}</td></tr>",
            Esc(&s.fqdn),
            // In a pool's section the pool is its title.
            if in_pool {
                Esc(&s.fqdn).to_string()
            } else {
                format!(
                    "{}<span class=\"sub\">{}</span>",
                    Name(&s.fqdn),
                    Name(&s.pool)
                )
            },
            state_badge(s.state.as_str()),
            // The whole reason is under Failures.
            match &s.reason {
                Some(reason) => format!(
                    "<span class=\"sub reason\" title=\"{}\">{}</span>",
                    Esc(reason),
                    Esc(&ellipsize(reason, 90))
                ),
                None => String::new(),
            },
            build_before(s),
            build_after(s),
            s.start_seconds.map(|at| t.cell(at)).unwrap_or_else(dash),
            s.end_seconds.map(|at| t.cell(at)).unwrap_or_else(dash),
            if over { " over" } else { "" },
            match s.outage_seconds {
                Some(o) => format!(
                    "{}{}{}",
                    minutes(o),
                    if s.outage_end_seconds.is_none() {
                        " (open)"
                    } else {
                        ""
                    },
                    if over { " \u{26a0} over 30 min" } else { "" }
                ),
                None => dash(),
            },
            s.steps.len(),
        )?;
    }
    writeln!(out, "</tbody>\n</table>")
}

/// The build the pre-flight read (HTML).
fn build_before(s: &ServerReport) -> String {
    match &s.build_before {
        Some(b) => Esc(b).to_string(),
        None if s.role_has_no_build() => {
            "none<span class=\"sub\">SQL Server only</span>".to_string()
        }
        None => dash(),
    }
}

/// The build the server ended on, and how that is known (HTML).
fn build_after(s: &ServerReport) -> String {
    match (&s.build_after, s.build_after_from) {
        (Some(b), Some(BuildSource::Verify)) => {
            format!("{}<span class=\"sub\">\u{2713} verified</span>", Esc(b))
        }
        (Some(b), _) => format!("{}<span class=\"sub\">unchanged</span>", Esc(b)),
        (None, Some(_)) => dash(),
        (None, None) => match s.state {
            ServerState::Pending | ServerState::Running => {
                "<span class=\"sub\">not yet</span>".to_string()
            }
            _ if s.role_has_no_build() => dash(),
            _ => "<span class=\"sub\">not verified</span>".to_string(),
        },
    }
}

impl ServerReport {
    /// The pre-flight ran and found no Skype for Business build (a SQL-only machine).
    fn role_has_no_build(&self) -> bool {
        self.build_before.is_none() && self.build_after_from == Some(BuildSource::Preflight)
    }
}

fn failures(r: &Report, t: &Times, out: &mut String) -> fmt::Result {
    writeln!(out, "<section id=\"failures\">")?;
    writeln!(out, "<h2>Failures</h2>")?;
    if r.failures.is_empty() {
        writeln!(out, "<p>No server failed or was skipped.</p>")?;
    }
    for f in &r.failures {
        let skipped = f.state == ServerState::Skipped;
        writeln!(
            out,
            "<article class=\"failure{}\" data-server=\"{}\">",
            if skipped { " skipped" } else { "" },
            Esc(&f.server)
        )?;
        writeln!(
            out,
            "<h3>{} {}{}</h3>",
            Esc(&f.server),
            state_badge(f.state.as_str()),
            match f.step {
                Some(step) if !skipped => format!(" at step {} {}", step.number(), step.as_str()),
                _ => String::new(),
            }
        )?;
        writeln!(out, "<dl class=\"facts\">")?;
        fact(out, "Pool", &f.pool)?;
        if let Some(at) = f.at_seconds {
            fact(out, "When", &t.full(at))?;
        }
        if let Some(code) = f.exit_code {
            fact(out, "Exit code", &code.to_string())?;
        }
        writeln!(out, "</dl>")?;
        writeln!(out, "<h4>Reason</h4>")?;
        writeln!(
            out,
            "<pre class=\"reason\">{}</pre>",
            Esc(f.reason.as_deref().unwrap_or("(none recorded)"))
        )?;
        if let Some(output) = &f.output {
            writeln!(out, "<h4>Output</h4>")?;
            writeln!(out, "<pre class=\"output\">{}</pre>", Esc(output))?;
        }
        if let Some(output) = &f.recovery_output {
            writeln!(out, "<h4>Recovery</h4>")?;
            writeln!(out, "<pre class=\"recovery\">{}</pre>", Esc(output))?;
        }
        hints(&f.hint, out)?;
        writeln!(out, "</article>")?;
    }
    writeln!(out, "</section>")
}

/// What to do next, as a list.
fn hints(h: &Hint, out: &mut String) -> fmt::Result {
    writeln!(out, "<h4>What to do next</h4>")?;
    writeln!(out, "<ul class=\"hints\">")?;
    if let Some(e) = &h.exit_code {
        writeln!(
            out,
            "<li class=\"hint-exit-code\"><b>Exit code {} ({})</b>: {}. {}.</li>",
            e.code,
            Esc(&e.name),
            Esc(&e.meaning),
            Esc(&capitalised(&e.action))
        )?;
    }
    if let Some(logs) = &h.logs {
        writeln!(
            out,
            "<li class=\"hint-logs\"><b>Installer logs</b>: {}.</li>",
            Esc(logs)
        )?;
    }
    writeln!(
        out,
        "<li class=\"hint-retry\"><b>Retry this server</b> {}.</li>",
        code_spans(&h.retry)
    )?;
    writeln!(out, "</ul>")
}

/// `text` escaped, with `backquoted` parts as `<code>`.
fn code_spans(text: &str) -> String {
    let mut html = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(html, "<code>{}</code>", Esc(part));
        } else {
            let _ = write!(html, "{}", Esc(part));
        }
    }
    html
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn databases(r: &Report, out: &mut String) -> fmt::Result {
    writeln!(out, "<section id=\"databases\">")?;
    writeln!(out, "<h2>Databases</h2>")?;
    if r.databases.is_empty() {
        writeln!(
            out,
            "<p class=\"note\">The run-level Test-CsDatabase has not run: the run did not reach \
             its end.</p>"
        )?;
        return writeln!(out, "</section>");
    }
    let behind = r.databases.iter().filter(|d| !d.is_current()).count();
    writeln!(
        out,
        "<p class=\"note\">Every database of the deployment after the last server, as \
         Test-CsDatabase read it: {} database(s), {behind} behind.</p>",
        r.databases.len()
    )?;
    let large = is_large(r);
    if large {
        writeln!(
            out,
            "<p class=\"note databases-left-out\">Listed here: the databases behind their \
             expected version. Every database, current or not, is in \
             <code>sfbpatch report --run {} --format json</code>.</p>",
            r.run.id
        )?;
        if behind == 0 {
            return writeln!(out, "</section>");
        }
    }
    writeln!(
        out,
        "<table class=\"databases\">\n<thead><tr><th>SQL Server</th><th>Store</th>\
         <th>Database</th><th>Installed</th><th>Expected</th></tr></thead>\n<tbody>"
    )?;
    for d in r.databases.iter().filter(|d| !large || !d.is_current()) {
        let sql = if d.sql_instance.is_empty() {
            d.sql_server_fqdn.clone()
        } else {
            format!("{}\\{}", d.sql_server_fqdn, d.sql_instance)
        };
        writeln!(
            out,
            "<tr{}><td class=\"name\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            if d.is_current() {
                ""
            } else {
                " class=\"impact\""
            },
            Name(&sql),
            Esc(&d.store),
            Esc(&d.database),
            Esc(&d.installed_version),
            Esc(&d.expected_version)
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    writeln!(out, "</section>")
}

/// The audit trail, an appendix: a `<details>` element, closed, so that it is neither in the
/// way on screen nor printed unless someone opens it first.
fn audit(r: &Report, t: &Times, out: &mut String) -> fmt::Result {
    writeln!(out, "<details class=\"appendix\" id=\"audit\">")?;
    writeln!(
        out,
        "<summary><h2>Appendix: audit trail</h2> ({} line(s){}; open it to read it, or to print \
         it with the report)</summary>",
        r.audit.len(),
        if r.audit.len() > AUDIT_LINES_SHOWN {
            format!(", the first {AUDIT_LINES_SHOWN} shown")
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "<p class=\"note\">Every command run on a server, as the append-only audit log recorded \
         it.</p>"
    )?;
    writeln!(
        out,
        "<table class=\"audit\">\n<thead><tr><th>When</th><th>Who</th><th>Server</th><th>Step</th>\
         <th>Command</th><th>Exit code</th><th>Output (excerpt)</th></tr></thead>\n<tbody>"
    )?;
    for a in r.audit.iter().take(AUDIT_LINES_SHOWN) {
        writeln!(
            out,
            "<tr data-server=\"{}\"><td class=\"when\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"code\">{}</td><td class=\"num\">{}</td><td class=\"out\">{}</td></tr>",
            Esc(&a.server),
            t.cell(a.at_seconds),
            Esc(&a.operator),
            Esc(&a.server),
            Esc(&a.step),
            Esc(a.command.as_deref().unwrap_or("")),
            a.exit_code.map(|c| c.to_string()).unwrap_or_else(dash),
            Esc(&a.output_excerpt)
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    if let Some(left) = r
        .audit
        .len()
        .checked_sub(AUDIT_LINES_SHOWN)
        .filter(|n| *n > 0)
    {
        writeln!(
            out,
            "<p class=\"note audit-left-out\">{left} more line(s) of the audit trail are left out \
             of this page; the full trail is in <code>sfbpatch report --run {} --format json</code>.</p>",
            r.run.id
        )?;
    }
    writeln!(out, "</details>")
}

// ---------------------------------------------------------------------------------------------
// Text

fn dash() -> String {
    "\u{2013}".to_string()
}

/// `12.5 min`.
fn minutes(seconds: f64) -> String {
    human::minutes(human::millis(seconds))
}

/// `30 minutes`.
fn whole_minutes(seconds: f64) -> String {
    let m = (seconds / 60.0).round();
    if m == 1.0 {
        "1 minute".to_string()
    } else {
        format!("{m} minutes")
    }
}

/// `T+01:02:03` since the run's start.
fn clock(seconds: f64) -> String {
    human::offset(human::millis(seconds))
}

/// `2 h 05 min 12 s`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h} h {m:02} min {s:02} s")
    } else {
        format!("{m} min {s:02} s")
    }
}

/// At most `max` characters, the end replaced by an ellipsis when cut.
fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('\u{2026}');
        t
    }
}

/// Text for HTML text and attribute values: markup characters become references; control
/// characters (which neither HTML nor XML allow) become visible symbols; CR is dropped.
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let mut buf = [0u8; 4];
            let replacement: &str = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                '\r' => "",
                '\t' | '\n' => continue,
                // Control pictures: U+2400 + the code for C0, U+2421 for DEL.
                '\0'..='\u{1f}' => char::from_u32(0x2400 + c as u32)
                    .unwrap_or('\u{fffd}')
                    .encode_utf8(&mut buf),
                '\u{7f}' => "\u{2421}",
                '\u{80}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}' => "\u{fffd}",
                _ => continue,
            };
            f.write_str(&s[plain..i])?;
            f.write_str(replacement)?;
            plain = i + c.len_utf8();
        }
        f.write_str(&s[plain..])
    }
}

/// A host name (or `host\\instance`, or a list of them) for a table cell: escaped, with a
/// line-break opportunity after each dot, so that a narrow column wraps it between labels.
struct Name<'a>(&'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.split('.').enumerate() {
            if i > 0 {
                f.write_str(".<wbr/>")?;
            }
            write!(f, "{}", Esc(part))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            Esc("<a href=\"x\">&'</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            Esc("a\r\nb\tc\u{1b}[31m\u{7f}\u{85}").to_string(),
            "a\nb\tc\u{241b}[31m\u{2421}\u{fffd}"
        );
        assert_eq!(Esc("plain ünïcode").to_string(), "plain ünïcode");
    }

    #[test]
    fn clock_and_minutes() {
        assert_eq!(clock(3723.4), "T+01:02:03");
        assert_eq!(minutes(1392.0), "23.2 min");
        assert_eq!(duration(7512.0), "2 h 05 min 12 s");
        assert_eq!(duration(59.0), "0 min 59 s");
        assert_eq!(ellipsize("abcdef", 4), "abc\u{2026}");
        assert_eq!(ellipsize("abc", 4), "abc");
    }

    #[test]
    fn axis_ticks_are_round() {
        let scale = |makespan_seconds: f64| {
            Scale::new(&Report {
                schema_version: SCHEMA_VERSION,
                run: RunSummary {
                    id: 1,
                    state: sfbpatch_engine::RunState::Succeeded,
                    makespan_seconds,
                    created_at_seconds: 0.0,
                    package: String::new(),
                    package_version: String::new(),
                    operator: String::new(),
                    topology_origin: String::new(),
                    target: serde_json::Value::Null,
                    resiliency_after_seconds: 1800.0,
                    approvals: Vec::new(),
                    clock: ClockKind::Lab,
                    started_at: None,
                    ended_at: None,
                },
                servers: Vec::new(),
                pools: Vec::new(),
                failures: Vec::new(),
                audit: Vec::new(),
                databases: Vec::new(),
            })
        };
        let s = scale(125.0 * 60.0);
        assert_eq!(s.tick, 10.0 * 60.0);
        assert_eq!(s.end, 130.0 * 60.0);
        let s = scale(10.0);
        assert_eq!(s.tick, 60.0);
        assert_eq!(s.end, 60.0);
        let s = scale(30.0 * 3600.0);
        assert_eq!(s.tick, 180.0 * 60.0);
        assert_eq!(s.end, 30.0 * 3600.0);
    }
}

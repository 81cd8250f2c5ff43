//! The report as one self-contained HTML page: inline CSS and SVG, no script, no font or image
//! from anywhere, a Content-Security-Policy that forbids loading anything. Every text that came
//! from a server or a file is escaped. Colours always come with a second cue (step numbers,
//! hatching, labels), and the page prints.

use std::fmt::{self, Write as _};

use sfbpatch_engine::{ServerState, StepState};
use sfbpatch_plan::StepId;

use crate::model::*;

/// Renders the report as one HTML document (well-formed XML as well as HTML5).
pub fn render_html(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024 + report.audit.len() * 512);
    page(report, &mut out).expect("writing to a String cannot fail");
    out
}

const CSS: &str = r#"
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
p.note { margin: 2px 0 8px; color: #444; font-size: 13px; }
dl.facts { display: flex; flex-wrap: wrap; gap: 4px 28px; margin: 0; }
dl.facts div { min-width: 120px; }
dt { font-size: 12px; color: #555; }
dd { margin: 0; font-weight: 600; }
.state { display: inline-block; padding: 0 8px; border: 1px solid #888; border-radius: 10px;
  font-size: 13px; font-weight: 600; vertical-align: middle; background: #f1f1f1; }
.state-succeeded { background: #e6f4ea; border-color: #2e7d32; }
.state-failed { background: #fce8e6; border-color: #b00020; }
.state-skipped, .state-interrupted, .state-awaiting-approval { background: #fff4e0; border-color: #b26a00; }
.state-running, .state-pending { background: #e8f0fe; border-color: #1a56b0; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid #c8c8c8; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-size: 13px; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.name { white-space: nowrap; }
td.code, td.out { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 12px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
tr.impact td { background: #fdecea; }
td.impact { font-weight: 700; color: #8a0016; }
td.over { font-weight: 700; color: #8a0016; }
pre { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 12px; white-space: pre-wrap;
  overflow-wrap: anywhere; background: #f7f7f7; border: 1px solid #ddd; padding: 6px 8px; margin: 2px 0 8px; }
article.failure { border-left: 4px solid #b00020; padding: 2px 0 2px 12px; margin: 10px 0; }
article.failure.skipped { border-left-color: #b26a00; }
svg.timeline { display: block; width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }
footer { margin-top: 24px; font-size: 12px; color: #555; border-top: 1px solid #ccc; padding-top: 6px; }
@media print {
  body { margin: 0; font-size: 11px; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  svg.timeline, tr, article.failure { break-inside: avoid; }
  h2 { break-after: avoid; }
}
"#;

fn page(r: &Report, out: &mut String) -> fmt::Result {
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
    header(r, out)?;
    writeln!(out, "<main>")?;
    timeline(r, out)?;
    impact(r, out)?;
    servers(r, out)?;
    failures(r, out)?;
    databases(r, out)?;
    audit(r, out)?;
    writeln!(out, "</main>")?;
    writeln!(
        out,
        "<footer>Built by sfbpatch from run {}'s write-ahead journal and audit log. Times are the \
         target's clock (virtual in the lab), counted from the run's start.</footer>",
        r.run.id
    )?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

fn header(r: &Report, out: &mut String) -> fmt::Result {
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
        let approvals: Vec<String> = run
            .approvals
            .iter()
            .map(|a| format!("wave {} by {} at {}", a.wave, a.by, clock(a.at_seconds)))
            .collect();
        fact(out, "Approved", &approvals.join("; "))?;
    }
    fact(out, "Operator", &run.operator)?;
    fact(out, "Topology", &run.topology_origin)?;
    fact(out, "Target", &target(&run.target))?;
    writeln!(out, "</dl>")?;
    writeln!(out, "</header>")
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
// The timeline

const WIDTH: f64 = 1320.0;
const LABEL: f64 = 250.0;
const RIGHT: f64 = 24.0;
const PLOT: f64 = WIDTH - LABEL - RIGHT;
const TOP: f64 = 34.0;
const ROW: f64 = 46.0;
const AXIS_BOTTOM: f64 = 26.0;
const LEGEND_COLUMNS: usize = 5;
const LEGEND_ROW: f64 = 22.0;

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

fn timeline(r: &Report, out: &mut String) -> fmt::Result {
    let scale = Scale::new(r);
    let rows = r.servers.len() as f64;
    let legend = legend_items();
    let legend_rows = legend.len().div_ceil(LEGEND_COLUMNS) as f64;
    let plot_bottom = TOP + rows * ROW;
    let height = plot_bottom + AXIS_BOTTOM + 10.0 + legend_rows * LEGEND_ROW + 8.0;
    let now = r.run.makespan_seconds;

    writeln!(out, "<section id=\"timeline\">")?;
    writeln!(out, "<h2>Timeline</h2>")?;
    writeln!(
        out,
        "<p class=\"note\">One row per server, in plan order; minutes since the run started. \
         Each step is a box numbered as in the procedure. The hatched band is the server's outage \
         window (from stopping its services to starting them again); the dashed line marks \
         {} after the window opened: a pool whose back end is still unavailable then has its \
         users in resiliency mode.</p>",
        whole_minutes(r.run.resiliency_after_seconds)
    )?;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-labelledby=\"timeline-title\" \
         font-family=\"system-ui, 'Segoe UI', 'DejaVu Sans', Arial, sans-serif\" font-size=\"11\">"
    )?;
    writeln!(
        out,
        "<title id=\"timeline-title\">Timeline of run {}: {} server(s) over {}</title>",
        r.run.id,
        r.servers.len(),
        minutes(now)
    )?;
    out.push_str(DEFS);

    // Axis: grid lines and minute labels above and below the rows.
    writeln!(out, "<g class=\"axis\">")?;
    writeln!(
        out,
        "<text x=\"12\" y=\"{}\" fill=\"#444\">minutes since start</text>",
        TOP - 12.0
    )?;
    let mut t = 0.0;
    while t <= scale.end + 0.5 {
        let x = scale.x(t);
        let label = format!("{}", (t / 60.0).round());
        writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e2e2e2\" stroke-width=\"1\"/>",
            TOP - 4.0,
            plot_bottom + 4.0
        )?;
        for y in [TOP - 12.0, plot_bottom + 17.0] {
            writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"#444\">{label}</text>"
            )?;
        }
        t += scale.tick;
    }
    writeln!(out, "</g>")?;

    for (i, s) in r.servers.iter().enumerate() {
        row(r, s, i, &scale, out)?;
    }

    for a in &r.run.approvals {
        let x = scale.x(a.at_seconds);
        writeln!(
            out,
            "<g class=\"approval\"><line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{plot_bottom:.1}\" \
             stroke=\"#2e7d32\" stroke-width=\"1.5\" stroke-dasharray=\"6 2 1 2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#2e7d32\"{HALO}>wave {} approved by {}</text></g>",
            TOP - 4.0,
            x + 4.0,
            TOP - 2.0,
            a.wave,
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

    legend_svg(&legend, plot_bottom + AXIS_BOTTOM + 10.0, out)?;
    writeln!(out, "</svg>")?;
    writeln!(out, "</section>")
}

fn row(r: &Report, s: &ServerReport, index: usize, scale: &Scale, out: &mut String) -> fmt::Result {
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
        "<text x=\"12\" y=\"{:.1}\" font-size=\"12.5\" font-weight=\"700\" fill=\"#111\"><title>{}</title>{}</text>",
        y + 19.0,
        Esc(&s.fqdn),
        Esc(&ellipsize(&s.fqdn, 32))
    )?;
    let marker = match s.state {
        ServerState::Failed => "\u{2717} ",
        ServerState::Skipped => "\u{2013} ",
        _ => "",
    };
    writeln!(
        out,
        "<text x=\"12\" y=\"{:.1}\" font-size=\"10.5\" fill=\"{}\">{}{} &#183; {}</text>",
        y + 35.0,
        if s.state == ServerState::Failed {
            FAILED_RED
        } else {
            "#555"
        },
        marker,
        s.state.as_str(),
        Esc(&ellipsize(&s.pool, 30))
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
            clock(start),
            if s.outage_end_seconds.is_some() {
                clock(end)
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
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"{FAILED_RED}\"{HALO}>{}</text>",
            lx + 3.0,
            y + ROW - 5.0,
            Esc(&format!("{:.0} min", limit / 60.0))
        )?;
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9.5\" fill=\"#7a3b00\"{HALO}>outage {}</text>",
            x + 3.0,
            y + 12.5,
            minutes(length)
        )?;
    }

    // Steps, reboots, the recovery.
    let top = y + 16.0;
    let height = 18.0;
    let mut last_x: Option<f64> = None;
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
            Esc(&step_title(s, st, start, end, open))
        )?;
        if failed {
            writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{height}\" fill=\"url(#p-failed)\"/>"
            )?;
        }
        if w >= 13.0 {
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" \
                 font-weight=\"700\" fill=\"#111\"{}>{}</text>",
                x + w / 2.0,
                top + 13.0,
                if failed { HALO } else { "" },
                st.id.number()
            )?;
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
            clock(rb.start_seconds),
            clock(rb.end_seconds)
        )?;
        if w >= 13.0 {
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" font-weight=\"700\" fill=\"#111\"{HALO}>R</text>",
                x + w / 2.0,
                top + 13.0
            )?;
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
            clock(rec.start_seconds),
            clock(rec.end_seconds)
        )?;
    }

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

fn step_title(s: &ServerReport, st: &StepReport, start: f64, end: f64, open: bool) -> String {
    let mut t = format!(
        "{}: {}. {} ({}), {} to {}",
        s.fqdn,
        st.id.number(),
        st.id.as_str(),
        st.state.as_str(),
        clock(start),
        if open { "now".to_string() } else { clock(end) }
    );
    t.push_str(&format!(", {}", minutes(end - start)));
    if st.attempts > 1 {
        t.push_str(&format!(", {} attempts", st.attempts));
    }
    if let Some(code) = st.exit_code {
        t.push_str(&format!(", exit code {code}"));
    }
    t
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

fn legend_svg(items: &[(Swatch, String)], top: f64, out: &mut String) -> fmt::Result {
    let column = (WIDTH - 24.0) / LEGEND_COLUMNS as f64;
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
    writeln!(out, "</g>")
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
            Esc(&p.fqdn),
            Esc(&p.site),
            if p.front_ends.is_empty() {
                "\u{2013}".to_string()
            } else {
                format!("{}/{}", p.front_ends_patched, p.front_ends.len())
            },
            Esc(&p.backend),
            if p.always_on { " (AlwaysOn)" } else { "" },
            Esc(&p.servers.join(", ")),
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

fn servers(r: &Report, out: &mut String) -> fmt::Result {
    let limit = r.run.resiliency_after_seconds;
    writeln!(out, "<section id=\"servers\">")?;
    writeln!(out, "<h2>Servers</h2>")?;
    writeln!(
        out,
        "<table class=\"servers\">\n<thead><tr><th>Server</th><th>Pool</th><th>State</th>\
         <th>Started</th><th>Finished</th><th>Outage window</th><th>Steps done</th>\
         <th>Reason</th></tr></thead>\n<tbody>"
    )?;
    for s in &r.servers {
        let done = s
            .steps
            .iter()
            .filter(|st| st.state == StepState::Succeeded)
            .count();
        let over = s.outage_seconds.is_some_and(|o| o > limit);
        writeln!(
            out,
            "<tr data-server=\"{}\"><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{done} of {}</td><td>{}</td></tr>",
            Esc(&s.fqdn),
            Esc(&s.fqdn),
            Esc(&s.pool),
            state_badge(s.state.as_str()),
            s.start_seconds.map(clock).unwrap_or_else(dash),
            s.end_seconds.map(clock).unwrap_or_else(dash),
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
            Esc(s.reason.as_deref().unwrap_or(""))
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    writeln!(out, "</section>")
}

fn failures(r: &Report, out: &mut String) -> fmt::Result {
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
            fact(out, "When", &clock(at))?;
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
        writeln!(out, "</article>")?;
    }
    writeln!(out, "</section>")
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
    writeln!(
        out,
        "<table class=\"databases\">\n<thead><tr><th>SQL Server</th><th>Store</th>\
         <th>Database</th><th>Installed</th><th>Expected</th></tr></thead>\n<tbody>"
    )?;
    for d in &r.databases {
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
            Esc(&sql),
            Esc(&d.store),
            Esc(&d.database),
            Esc(&d.installed_version),
            Esc(&d.expected_version)
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    writeln!(out, "</section>")
}

fn audit(r: &Report, out: &mut String) -> fmt::Result {
    writeln!(out, "<section id=\"audit\">")?;
    writeln!(out, "<h2>Audit trail</h2>")?;
    writeln!(
        out,
        "<p class=\"note\">Every command run on a server, as the append-only audit log recorded \
         it: {} line(s).</p>",
        r.audit.len()
    )?;
    writeln!(
        out,
        "<table class=\"audit\">\n<thead><tr><th>When</th><th>Who</th><th>Server</th><th>Step</th>\
         <th>Command</th><th>Exit code</th><th>Output (excerpt)</th></tr></thead>\n<tbody>"
    )?;
    for a in &r.audit {
        writeln!(
            out,
            "<tr data-server=\"{}\"><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"code\">{}</td><td class=\"num\">{}</td><td class=\"out\">{}</td></tr>",
            Esc(&a.server),
            clock(a.at_seconds),
            Esc(&a.operator),
            Esc(&a.server),
            Esc(&a.step),
            Esc(a.command.as_deref().unwrap_or("")),
            a.exit_code.map(|c| c.to_string()).unwrap_or_else(dash),
            Esc(&a.output_excerpt)
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    writeln!(out, "</section>")
}

// ---------------------------------------------------------------------------------------------
// Text

fn dash() -> String {
    "\u{2013}".to_string()
}

/// `12.5 min`.
fn minutes(seconds: f64) -> String {
    format!("{:.1} min", seconds / 60.0)
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
    let s = seconds.max(0.0).round() as u64;
    format!("T+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
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

//! The dashboard's one page: inline CSS and script, nothing loaded from anywhere else. The data
//! it shows is embedded as JSON (with `<`, `>` and `&` escaped, so no value can close the
//! script element) and rendered with `textContent` only: a topology value or a command's output
//! is always text, never markup. The one exception is the timeline, the HTML report's own
//! drawing (`/runs/{id}/timeline`), which the report's renderer escapes: the page places it as
//! it comes, and carries the report's style rules for it ([`sfbpatch_report::TIMELINE_CSS`]).

use serde::Serialize;

pub enum Kind {
    Runs,
    Run { actions: bool },
}

/// JSON safe inside a `<script type="application/json">` element.
fn embed<T: Serialize>(data: &T) -> String {
    let text = serde_json::to_string(data).unwrap_or_else(|_| "null".to_string());
    text.replace('&', "\\u0026")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

pub fn render<T: Serialize>(kind: Kind, data: &T) -> String {
    let (view, actions) = match kind {
        Kind::Runs => ("runs", false),
        Kind::Run { actions } => ("run", actions),
    };
    // The data last: nothing in it is taken for a placeholder.
    PAGE.replace("{{TIMELINE_CSS}}", sfbpatch_report::TIMELINE_CSS)
        .replace("{{VIEW}}", view)
        .replace("{{ACTIONS}}", if actions { "true" } else { "false" })
        .replace("{{DATA}}", &embed(data))
}

const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sfbpatch</title>
<style>
:root { --ok:#1a7f37; --warn:#b35900; --bad:#c62828; --mute:#666; --line:#ddd; --bg:#fafafa; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1b1b1b; background: var(--bg); }
header { background: #243b53; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; }
header a { color: #cfe3ff; }
main { padding: 12px 20px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; margin-bottom: 12px; }
h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: #333; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.state { font-weight: 600; }
.s-succeeded, .s-already-current { color: var(--ok); }
.s-failed { color: var(--bad); }
.s-running, .s-awaiting-approval { color: #0b5cad; }
.s-skipped, .s-pending, .s-interrupted { color: var(--mute); }
.bar { position: relative; width: 220px; height: 14px; background: #eee; border-radius: 3px; overflow: hidden; display: inline-block; vertical-align: middle; }
.bar > i { position: absolute; left: 0; top: 0; bottom: 0; background: var(--ok); }
.bar.amber > i { background: #f0a020; }
.bar.red > i { background: var(--bad); }
.bar > b { position: absolute; top: 0; bottom: 0; width: 2px; background: #333; }
.clock { font-variant-numeric: tabular-nums; margin-left: 6px; }
.prog { font-variant-numeric: tabular-nums; color: #333; }
.banner { padding: 8px 12px; border-radius: 6px; margin-bottom: 12px; font-weight: 600; }
.banner.approval { background: #fff4d6; border: 1px solid #f0c040; }
.banner.stop { background: #fde8e8; border: 1px solid #f0a0a0; }
pre { white-space: pre-wrap; word-break: break-word; background: #f4f4f4; padding: 6px 8px; margin: 4px 0 0; max-height: 14em; overflow: auto; font-size: 12px; }
button { font: inherit; padding: 4px 12px; margin-right: 8px; cursor: pointer; }
.muted { color: var(--mute); }
#live { font-size: 12px; }
.failure { margin-bottom: 12px; }
.quorum.lost { color: var(--bad); font-weight: 600; }
/* The HTML report's timeline (sfbpatch_report::TIMELINE_CSS). */
{{TIMELINE_CSS}}</style>
</head>
<body>
<header><h1><a href="/" id="home">sfbpatch</a></h1><span id="title"></span><span id="live" class="muted"></span></header>
<main id="main"></main>
<script id="data" type="application/json">{{DATA}}</script>
<script>
"use strict";
const VIEW = "{{VIEW}}";
const ACTIONS = {{ACTIONS}};
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
document.getElementById("home").href = withToken("/");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "title") e.title = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}
const mmss = (s) => { s = Math.max(0, Math.round(s)); const m = Math.floor(s / 60); return m + ":" + String(s % 60).padStart(2, "0"); };
const minutes = (s) => (s / 60).toFixed(1) + " min";
const state = (s) => el("span", { class: "state s-" + s }, s);

function outageBar(seconds, open, line) {
  if (seconds === null || seconds === undefined) return el("span", { class: "muted" }, "no outage");
  // The bar spans 1.25 times the 30-minute line; amber from 80 % of the line, red past it.
  const span = line * 1.25;
  const frac = seconds / line;
  const bar = el("span", { class: "bar" + (frac > 1 ? " red" : frac >= 0.8 ? " amber" : ""), title: "30-minute line" });
  const fill = el("i"); fill.style.width = Math.min(100, seconds / span * 100) + "%";
  const mark = el("b"); mark.style.left = (line / span * 100) + "%";
  bar.append(fill, mark);
  return el("span", {}, bar, el("span", { class: "clock" }, mmss(seconds) + (open ? " (open)" : "")));
}

function renderRuns(list) {
  document.getElementById("title").textContent = "runs";
  const rows = list.runs.map((r) => el("tr", {},
    el("td", {}, el("a", { href: withToken("/runs/" + r.id) }, "run " + r.id)),
    el("td", {}, state(r.state)),
    el("td", {}, r.package + " " + r.package_version),
    el("td", {}, String(r.servers)),
    el("td", {}, r.operator)));
  const table = el("table", {}, el("tr", {}, ...["run", "state", "package", "servers", "operator"].map((h) => el("th", {}, h))), ...rows);
  const main = document.getElementById("main");
  main.replaceChildren(el("section", {}, el("h2", {}, "Runs in the store"), list.runs.length ? table : el("p", { class: "muted" }, "No run yet.")));
}

async function act(what, id) {
  const headers = { "X-Sfbpatch-Action": "1" };
  if (token) headers["Authorization"] = "Bearer " + token;
  const msg = document.getElementById("action-result");
  try {
    const r = await fetch("/api/runs/" + id + "/" + what, { method: "POST", headers });
    msg.textContent = (await r.text()).trim();
  } catch (e) { msg.textContent = String(e); }
}

function renderRun(v) {
  const r = v.run;
  const line = r.resiliency_after_seconds;
  document.getElementById("title").textContent = "run " + r.id + " · " + r.package + " " + r.package_version;
  const main = document.getElementById("main");
  const parts = [];
  const head = el("section", { id: "run" },
    el("h2", {}, "Run ", el("span", { id: "run-state", class: "state s-" + r.state }, r.state)),
    el("div", {}, "operator " + r.operator + " · elapsed " + mmss(r.elapsed_seconds) + (r.clock === "lab" ? " (lab time)" : "")));
  if (r.window) {
    const w = r.window;
    head.append(el("div", { id: "window" }, "maintenance window " + (w.spec ? w.spec + " " : "") +
      (w.open ? "open, " + minutes(w.remaining_seconds) + " left" : "opens in " + minutes(w.opens_at_seconds - r.elapsed_seconds))));
  }
  for (const a of r.approvals) head.append(el("div", { class: "muted" }, "wave " + a.wave + " approved by " + a.by));
  parts.push(head);
  if (r.awaiting_approval) parts.push(el("div", { class: "banner approval", id: "awaiting" }, "The canary wave is done and awaits approval."));
  if (r.stop_requested_by) parts.push(el("div", { class: "banner stop" }, "Stop requested by " + r.stop_requested_by + ": no new server starts; servers inside their outage window finish."));
  if (ACTIONS) {
    const box = el("section", { id: "actions" }, el("h2", {}, "Actions"));
    if (r.awaiting_approval) { const b = el("button", { id: "approve" }, "Approve the canary wave"); b.onclick = () => act("approve", r.id); box.append(b); }
    if (r.state === "running") { const b = el("button", { id: "stop" }, "Stop at the next step boundary"); b.onclick = () => act("stop", r.id); box.append(b); }
    box.append(el("span", { id: "action-result", class: "muted" }));
    parts.push(box);
  }
  const servers = el("table", { id: "servers" }, el("tr", {}, ...["server", "pool", "site", "kind", "state", "step", "progress", "outage (30-minute line)"].map((h) => el("th", {}, h))));
  for (const s of v.servers) {
    servers.append(el("tr", { "data-server": s.fqdn },
      el("td", {}, s.fqdn), el("td", {}, s.pool), el("td", { class: "site" }, s.site), el("td", {}, s.role),
      el("td", { class: "server-state" }, state(s.state)),
      el("td", {}, s.current_step ? s.current_step + " (" + s.current_step_state + ")" : ""),
      el("td", { class: "prog" }, s.steps_done + " of " + s.steps_total),
      el("td", {}, outageBar(s.outage_seconds, s.outage_open, line))));
  }
  parts.push(el("section", {}, el("h2", {}, "Servers"), servers));
  const pools = el("table", { id: "pools" }, el("tr", {}, ...["pool", "back end", "back end unavailable", "users in resiliency mode", "Front End servers in service"].map((h) => el("th", {}, h))));
  for (const p of v.pools) {
    pools.append(el("tr", { "data-pool": p.fqdn },
      el("td", {}, p.fqdn), el("td", {}, p.backend),
      el("td", { class: "unavailable" }, minutes(p.unavailable_seconds) + (p.backend_unavailable ? " (now)" : "")),
      el("td", { class: "resiliency" }, minutes(p.resiliency_seconds) + (p.in_resiliency ? " (now)" : "")),
      el("td", { class: "front-ends" }, frontEnds(p))));
  }
  parts.push(el("section", {}, el("h2", {}, "Pools"), pools));
  if (v.failures.length) {
    const f = el("section", { id: "failures" }, el("h2", {}, "Failures"));
    for (const x of v.failures) {
      f.append(el("div", { class: "failure", "data-failure": x.server },
        el("strong", {}, x.server), " ", state(x.state), x.step ? " at " + x.step : "",
        x.exit_code !== null ? " (exit code " + x.exit_code + ")" : "",
        el("div", {}, x.reason || ""),
        x.output ? el("pre", {}, x.output) : null,
        el("div", { class: "muted" }, x.retry)));
    }
    parts.push(f);
  }
  parts.push(timeline);
  main.replaceChildren(...parts);
}

// An Enterprise pool's Front End servers in service (those of the pool not in the run count as
// in service) against its quorum, red and said "lost" when it is not kept; then what the run
// patched of them.
function frontEnds(p) {
  if (!p.front_ends_in_pool) return el("span", { class: "muted" }, "none");
  const inService = p.front_ends_in_pool - (p.front_ends - p.front_ends_in_service);
  const lost = p.quorum_kept === false;
  const quorum = el("span", { class: "quorum" + (lost ? " lost" : ""), "data-quorum": lost ? "lost" : "kept" },
    "Front End " + inService + "/" + p.front_ends_in_pool + " in service · quorum " + p.quorum_required +
    (p.quorum_among < p.front_ends_in_pool ? " of the first " + p.quorum_among : "") + (lost ? " lost" : ""));
  return el("span", {}, quorum, el("span", { class: "muted" }, " · patched " + p.front_ends_patched + " of " + p.front_ends + " in the run"));
}

// The HTML report's timeline, drawn by the server (/runs/ID/timeline): loaded with the page and
// again after snapshots arrive, at most once every 5 s. It keeps its place across redraws.
const timeline = el("section", { id: "timeline" }, el("h2", {}, "Timeline"), el("p", { class: "muted" }, "loading…"));
const TIMELINE_EVERY = 5000;
let timelineAt = -Infinity, timelineTimer = null, timelineSeq = 0;
async function loadTimeline(id) {
  timelineAt = Date.now();
  const mine = ++timelineSeq;
  try {
    const r = await fetch("/runs/" + id + "/timeline", { headers: token ? { "Authorization": "Bearer " + token } : {} });
    const text = await r.text();
    // A later load may have overtaken this one.
    if (mine !== timelineSeq) return;
    // The report's renderer escaped every value from a topology or a command's output.
    if (r.ok) timeline.innerHTML = text;
    else timeline.replaceChildren(el("h2", {}, "Timeline"), el("p", { class: "muted" }, "the timeline could not be drawn: " + text.trim()));
  } catch (e) { /* the server is gone: keep what is shown */ }
}
function timelineSoon(id) {
  if (timelineTimer !== null) return;
  const wait = Math.max(0, timelineAt + TIMELINE_EVERY - Date.now());
  timelineTimer = setTimeout(() => { timelineTimer = null; loadTimeline(id); }, wait);
}

const initial = JSON.parse(document.getElementById("data").textContent);
if (VIEW === "runs") {
  renderRuns(initial);
} else {
  renderRun(initial);
  loadTimeline(initial.run.id);
  const live = document.getElementById("live");
  if (!["succeeded", "failed"].includes(initial.run.state) && window.EventSource) {
    const es = new EventSource(withToken("/api/runs/" + initial.run.id + "/events"));
    es.addEventListener("snapshot", (e) => {
      const v = JSON.parse(e.data);
      renderRun(v);
      timelineSoon(v.run.id);
      live.textContent = "live · updated " + new Date().toLocaleTimeString();
      if (["succeeded", "failed"].includes(v.run.state)) es.close();
    });
    es.addEventListener("failed", (e) => { live.textContent = "updates stopped: " + e.data; es.close(); });
    es.onerror = () => { live.textContent = "reconnecting…"; };
  }
}
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::{Kind, render};

    #[test]
    fn the_page_carries_the_reports_timeline_styles_and_no_placeholder() {
        let page = render(
            Kind::Run { actions: false },
            &serde_json::json!({"a": "{{VIEW}}"}),
        );
        assert!(page.contains(sfbpatch_report::TIMELINE_CSS), "{page}");
        assert!(page.contains(r#"el("section", { id: "timeline" }"#));
        assert!(page.contains("const VIEW = \"run\";"));
        // A placeholder in the data is data.
        assert!(page.contains(r#"{"a":"{{VIEW}}"}"#));
        assert_eq!(page.matches("{{").count(), 1, "{page}");
    }

    #[test]
    fn embedded_data_cannot_close_the_script_element() {
        let page = render(
            Kind::Runs,
            &serde_json::json!({"runs": [{"operator": "</script><script>alert(1)</script>&"}]}),
        );
        let data = page
            .split("<script id=\"data\" type=\"application/json\">")
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .expect("the data element");
        assert_eq!(
            data,
            r#"{"runs":[{"operator":"\u003c/script\u003e\u003cscript\u003ealert(1)\u003c/script\u003e\u0026"}]}"#
        );
        let back: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            back["runs"][0]["operator"],
            "</script><script>alert(1)</script>&"
        );
    }
}

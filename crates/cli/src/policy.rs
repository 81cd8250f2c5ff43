//! The rollout policy: a TOML file (`--policy FILE`, `sfbpatch policy check FILE`) and the
//! flags of `apply`, which win over the file. Turned into the engine's [`RunPolicy`] here, so
//! that the engine never reads files or time zones.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use sfbpatch_engine::policy::{FrontEndBatch, MINUTE, WaveSize, Window};
use sfbpatch_engine::{Millis, RunPolicy};
use sfbpatch_plan::ServerKind;

use crate::cli::RunOptions;
use crate::exit::Failure;

/// The policy file. Every key is optional.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Outage budget per server, in minutes (default 30, the resiliency line).
    pub outage_budget_minutes: Option<f64>,
    pub accept_resiliency: Option<bool>,
    /// Servers in their outage window at once (default 1).
    pub max_parallel: Option<u32>,
    pub max_parallel_per_site: Option<u32>,
    pub max_failures: Option<u32>,
    pub max_failure_percent: Option<f64>,
    pub continue_on_failure: Option<bool>,
    /// Roles in the order they go: `standard-edition`, `enterprise-backend`.
    pub order: Option<Vec<ServerKind>>,
    /// Canary waves, e.g. `"1,5,25%"`.
    pub waves: Option<String>,
    pub pause_after_canary: Option<bool>,
    pub window: Option<WindowFile>,
    /// Front End servers of one pool out at once: `server` (default) or `upgrade-domain`.
    pub front_end_batch: Option<FrontEndBatch>,
    #[serde(default, rename = "pair")]
    pub pairs: Vec<PairFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFile {
    /// `HH:MM`, local time in `timezone`.
    pub start: String,
    pub end: String,
    /// An IANA time zone (default: UTC).
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairFile {
    pub pools: [String; 2],
}

/// The effective rollout settings, before windows are placed on the target's clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub outage_budget_minutes: f64,
    pub accept_resiliency: bool,
    pub max_parallel: u32,
    pub max_parallel_per_site: Option<u32>,
    pub max_failures: Option<u32>,
    pub max_failure_percent: Option<f64>,
    pub continue_on_failure: bool,
    pub order: Vec<ServerKind>,
    pub waves: Vec<WaveSize>,
    pub pause_after_canary: bool,
    pub window: Option<DailyWindow>,
    pub front_end_batch: FrontEndBatch,
    pub pairs: Vec<[String; 2]>,
}

impl DailyWindow {
    /// `22:00-05:00 Europe/Berlin`: what [`DailyWindow::parse_spec`] reads back.
    pub fn spec(&self) -> String {
        format!("{}-{} {}", self.start, self.end, self.timezone)
    }

    pub fn parse_spec(spec: &str) -> Result<Self, Failure> {
        let (range, tz) = spec.split_once(' ').unwrap_or((spec, "UTC"));
        parse_window(range, Some(tz), "the run's policy")
    }

    /// The window open now, or the next one, on the target's clock: `clock_now` is the target
    /// clock's reading at wall time `unix_now_ms`. A window that has closed is never given: a
    /// run stops at the end of its night and `resume` takes the next.
    pub fn next(&self, clock_now: Millis, unix_now_ms: i64) -> Result<Window, Failure> {
        let tz = jiff::tz::TimeZone::get(&self.timezone)
            .map_err(|e| Failure::bad_input(anyhow!("timezone '{}': {e}", self.timezone)))?;
        let now = jiff::Timestamp::from_millisecond(unix_now_ms)
            .map_err(|e| Failure::internal(anyhow!("clock: {e}")))?;
        let today = now.to_zoned_datetime(tz.clone()).date();
        let length = if self.end_min > self.start_min {
            self.end_min - self.start_min
        } else {
            self.end_min + 24 * 60 - self.start_min
        };
        for day in -1..3i64 {
            let date = today
                .checked_add(jiff::Span::new().days(day))
                .map_err(|e| Failure::internal(anyhow!("calendar: {e}")))?;
            let open = date
                .at(
                    (self.start_min / 60) as i8,
                    (self.start_min % 60) as i8,
                    0,
                    0,
                )
                .to_zoned_datetime(tz.clone())
                .map_err(|e| Failure::internal(anyhow!("calendar: {e}")))?;
            let opens_unix = open.timestamp().as_millisecond();
            let closes_unix = opens_unix + length * 60_000;
            if closes_unix > unix_now_ms {
                let to_clock = |unix: i64| -> Millis {
                    (clock_now as i64 + (unix - unix_now_ms)).max(0) as Millis
                };
                return Ok(Window {
                    opens_at: to_clock(opens_unix),
                    closes_at: to_clock(closes_unix),
                });
            }
        }
        Err(Failure::internal(anyhow!(
            "no maintenance window in the next days"
        )))
    }
}

/// A daily maintenance window in a time zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyWindow {
    pub start: String,
    pub end: String,
    pub timezone: String,
    #[serde(skip)]
    start_min: i64,
    #[serde(skip)]
    end_min: i64,
}

pub fn parse_file(text: &str, origin: &str) -> Result<PolicyFile, Failure> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        Failure::bad_input(anyhow!(
            "{origin}:{line}:{col}: {} [SFB-C001]",
            e.message().trim_end()
        ))
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub fn load(path: &Path) -> Result<PolicyFile, Failure> {
    let text = crate::input::read_text(path, "policy file")?;
    parse_file(&text, &path.display().to_string())
}

fn bad(origin: &str, what: String) -> Failure {
    Failure::bad_input(anyhow!("{origin}: {what} [SFB-C002]"))
}

pub fn parse_waves(s: &str, origin: &str) -> Result<Vec<WaveSize>, Failure> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let wave = if let Some(p) = part.strip_suffix('%') {
            match p.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 100.0 => WaveSize::Percent(v),
                _ => {
                    return Err(bad(
                        origin,
                        format!("waves: '{part}' is not a percentage between 0 and 100"),
                    ));
                }
            }
        } else {
            match part.parse::<u32>() {
                Ok(n) if n > 0 => WaveSize::Servers(n),
                _ => {
                    return Err(bad(
                        origin,
                        format!(
                            "waves: '{part}' is not a positive number of servers or a percentage"
                        ),
                    ));
                }
            }
        };
        out.push(wave);
    }
    Ok(out)
}

fn hhmm(s: &str, origin: &str, what: &str) -> Result<i64, Failure> {
    let err = || bad(origin, format!("{what}: '{s}' is not a time like 22:00"));
    let (h, m) = s.trim().split_once(':').ok_or_else(err)?;
    let h: i64 = h.parse().map_err(|_| err())?;
    let m: i64 = m.parse().map_err(|_| err())?;
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(err());
    }
    Ok(h * 60 + m)
}

pub fn parse_window(
    spec: &str,
    timezone: Option<&str>,
    origin: &str,
) -> Result<DailyWindow, Failure> {
    let (start, end) = spec
        .split_once('-')
        .ok_or_else(|| bad(origin, format!("window: '{spec}' is not like 22:00-05:00")))?;
    daily(start, end, timezone, origin)
}

fn daily(
    start: &str,
    end: &str,
    timezone: Option<&str>,
    origin: &str,
) -> Result<DailyWindow, Failure> {
    let start_min = hhmm(start, origin, "window start")?;
    let end_min = hhmm(end, origin, "window end")?;
    if start_min == end_min {
        return Err(bad(
            origin,
            "window: start and end are the same time".into(),
        ));
    }
    let timezone = timezone.unwrap_or("UTC").to_string();
    jiff::tz::TimeZone::get(&timezone)
        .map_err(|e| bad(origin, format!("timezone '{timezone}': {e}")))?;
    Ok(DailyWindow {
        start: start.trim().to_string(),
        end: end.trim().to_string(),
        timezone,
        start_min,
        end_min,
    })
}

/// Merge the file and the flags (flags win) and check the result.
pub fn rollout(file: &PolicyFile, flags: &RunOptions, origin: &str) -> Result<Rollout, Failure> {
    let outage_budget_minutes = flags
        .outage_budget
        .or(file.outage_budget_minutes)
        .unwrap_or(30.0);
    if !(outage_budget_minutes.is_finite() && outage_budget_minutes > 0.0) {
        return Err(bad(
            origin,
            "the outage budget must be a positive number of minutes".into(),
        ));
    }
    let max_parallel = flags.max_parallel.or(file.max_parallel).unwrap_or(1);
    if max_parallel == 0 {
        return Err(bad(origin, "max-parallel must be at least 1".into()));
    }
    let max_parallel_per_site = flags.max_parallel_per_site.or(file.max_parallel_per_site);
    if max_parallel_per_site == Some(0) {
        return Err(bad(
            origin,
            "max-parallel-per-site must be at least 1".into(),
        ));
    }
    let continue_on_failure =
        flags.continue_on_failure || file.continue_on_failure.unwrap_or(false);
    let max_failure_percent = flags.max_failure_percent.or(file.max_failure_percent);
    if let Some(p) = max_failure_percent
        && !(p.is_finite() && (0.0..=100.0).contains(&p))
    {
        return Err(bad(
            origin,
            "max-failure-percent must be between 0 and 100".into(),
        ));
    }
    let explicit = flags.max_failures.or(file.max_failures);
    // Without --continue-on-failure and without limits, the first failure stops the run.
    let max_failures = match (explicit, continue_on_failure, max_failure_percent) {
        (Some(n), _, _) => Some(n),
        (None, true, _) | (None, false, Some(_)) => None,
        (None, false, None) => Some(0),
    };
    let waves = match flags.waves.as_deref().or(file.waves.as_deref()) {
        Some(w) => parse_waves(w, origin)?,
        None => Vec::new(),
    };
    let pause_after_canary = flags.pause_after_canary || file.pause_after_canary.unwrap_or(false);
    if pause_after_canary && waves.is_empty() {
        return Err(bad(
            origin,
            "pause-after-canary needs waves (e.g. --waves 1,25%)".into(),
        ));
    }
    let timezone = flags
        .timezone
        .as_deref()
        .or(file.window.as_ref().and_then(|w| w.timezone.as_deref()));
    let window = match (&flags.window, &file.window) {
        (Some(spec), _) => Some(parse_window(spec, timezone, origin)?),
        (None, Some(w)) => Some(daily(&w.start, &w.end, timezone, origin)?),
        (None, None) => {
            if flags.timezone.is_some() {
                return Err(bad(origin, "--timezone goes with --window".into()));
            }
            None
        }
    };
    let order = match flags.order {
        Some(crate::cli::OrderChoice::StandardFirst) => vec![
            ServerKind::StandardEdition,
            ServerKind::FrontEnd,
            ServerKind::BackEnd,
            ServerKind::Store,
        ],
        Some(crate::cli::OrderChoice::EnterpriseFirst) => vec![
            ServerKind::FrontEnd,
            ServerKind::BackEnd,
            ServerKind::Store,
            ServerKind::StandardEdition,
        ],
        Some(crate::cli::OrderChoice::Plan) => Vec::new(),
        None => file.order.clone().unwrap_or_default(),
    };
    let pairs = file.pairs.iter().map(|p| p.pools.clone()).collect();
    let front_end_batch = match flags.front_end_batch {
        Some(crate::cli::FrontEndBatchChoice::Server) => FrontEndBatch::Server,
        Some(crate::cli::FrontEndBatchChoice::UpgradeDomain) => FrontEndBatch::UpgradeDomain,
        None => file.front_end_batch.unwrap_or_default(),
    };
    Ok(Rollout {
        front_end_batch,
        outage_budget_minutes,
        accept_resiliency: flags.accept_resiliency || file.accept_resiliency.unwrap_or(false),
        max_parallel,
        max_parallel_per_site,
        max_failures,
        max_failure_percent,
        continue_on_failure,
        order,
        waves,
        pause_after_canary,
        window,
        pairs,
    })
}

impl Rollout {
    /// The engine's policy, with the next maintenance window placed on the target's clock.
    pub fn run_policy(&self, clock_now: Millis, unix_now_ms: i64) -> Result<RunPolicy, Failure> {
        let (windows, window_spec) = match &self.window {
            Some(w) => (vec![w.next(clock_now, unix_now_ms)?], Some(w.spec())),
            None => (Vec::new(), None),
        };
        Ok(RunPolicy {
            outage_budget_ms: (self.outage_budget_minutes * MINUTE as f64).round() as Millis,
            accept_resiliency: self.accept_resiliency,
            max_failures: self.max_failures,
            max_failure_percent: self.max_failure_percent,
            continue_on_failure: self.continue_on_failure,
            max_parallel: self.max_parallel,
            max_parallel_per_site: self.max_parallel_per_site,
            order: self.order.clone(),
            waves: self.waves.clone(),
            pause_after_canary: self.pause_after_canary,
            front_end_batch: self.front_end_batch,
            pairs: self.pairs.clone(),
            windows,
            window_spec,
            store_outage_limit_ms: sfbpatch_engine::policy::STORE_OUTAGE_LIMIT,
            lease_ttl_ms: sfbpatch_engine::LEASE_TTL,
        })
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "outage budget         {} min per server{}",
            self.outage_budget_minutes,
            if self.accept_resiliency {
                " (servers over it start anyway)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "parallel              {} server(s) in outage at once{}",
            self.max_parallel,
            self.max_parallel_per_site
                .map(|n| format!(", {n} per site"))
                .unwrap_or_default()
        );
        let budget = match (self.max_failures, self.max_failure_percent) {
            (Some(0), None) => "the first failure stops the run".to_string(),
            (Some(n), None) => format!("stop after more than {n} failed server(s)"),
            (None, Some(p)) => format!("stop after more than {p}% of servers failed"),
            (Some(n), Some(p)) => {
                format!("stop after more than {n} failed server(s) or more than {p}%")
            }
            (None, None) => "no limit: every isolated failure is skipped".to_string(),
        };
        let _ = writeln!(s, "failure budget        {budget}");
        let order = if self.order.is_empty() {
            "plan order".to_string()
        } else {
            self.order
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", then ")
        };
        let _ = writeln!(s, "order                 {order}");
        let _ = writeln!(
            s,
            "front end servers     {}",
            match self.front_end_batch {
                FrontEndBatch::Server => "one per pool at a time",
                FrontEndBatch::UpgradeDomain => "one upgrade domain per pool at a time",
            }
        );
        let waves = if self.waves.is_empty() {
            "one wave".to_string()
        } else {
            self.waves
                .iter()
                .map(|w| match w {
                    WaveSize::Servers(n) => n.to_string(),
                    WaveSize::Percent(p) => format!("{p}%"),
                })
                .collect::<Vec<_>>()
                .join(", ")
                + ", then the rest"
                + if self.pause_after_canary {
                    " (pause for approval after the first)"
                } else {
                    ""
                }
        };
        let _ = writeln!(s, "waves                 {waves}");
        let window = self
            .window
            .as_ref()
            .map(|w| format!("{}-{} {}", w.start, w.end, w.timezone))
            .unwrap_or_else(|| "any time".into());
        let _ = writeln!(s, "maintenance window    {window}");
        for [a, b] in &self.pairs {
            let _ = writeln!(
                s,
                "paired pools          {a} and {b} never in outage together"
            );
        }
        s
    }
}

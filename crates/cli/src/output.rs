//! Output conventions: data on stdout, messages and progress on stderr, colour only when
//! stderr is a terminal and NO_COLOR is not set; the log (`-v`, `-q`, `RUST_LOG`,
//! `--log-file`); and the one way each kind of value is written for people: durations,
//! offsets on the target clock, local times, and free text from topologies and servers.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::ColorChoice;
use crate::exit::Failure;

pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
                && std::io::stderr().is_terminal()
        }
    }
}

/// Write data to stdout. A closed pipe (`| head`) is not an error.
pub fn data(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            out.write_all(b"\n")
        }
    }) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::internal(e)),
        _ => Ok(()),
    }
}

pub fn json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    data(&serde_json::to_string_pretty(value).map_err(Failure::internal)?)
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q`: only errors reach stderr. Notes are not printed (they still reach `--log-file`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `-q` was given: renderers of progress print nothing but errors then.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// The log target of notes: they reach `--log-file` (and a `RUST_LOG` that names it), never
/// stderr twice.
pub const NOTE_TARGET: &str = "sfbpatch::note";

/// A message for the person at the terminal (nothing with `-q`), and a line of the log file.
pub fn note(text: &str) {
    tracing::info!(target: NOTE_TARGET, "{}", printable_lines(text));
    if !quiet() {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

// ---- free text ------------------------------------------------------------------------

/// Free text that came from a topology, an inventory, a server or the environment (a site
/// name, an upgrade domain, a failure's reason, a lease holder), safe to print on a terminal:
/// every control or invisible character (an escape sequence's ESC, a carriage return, a
/// newline, a bidirectional override) is written as `\u{1b}`. JSON output needs none of this:
/// serde escapes control characters itself.
pub fn printable(text: &str) -> Cow<'_, str> {
    sfbpatch_plan::printable(text)
}

/// [`printable`] for a message of several lines (an error with its list of causes): each line
/// is made printable, the line breaks are kept.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    if !text.contains('\n') {
        return printable(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(printable).collect();
    if lines.iter().all(|l| matches!(l, Cow::Borrowed(_))) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(lines.join("\n"))
}

/// The width of a table's first column: its longest name, and at least 40 characters so the
/// usual FQDNs line up the same from one table to the next.
pub fn name_column<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
    names
        .into_iter()
        .map(|n| printable(n).chars().count())
        .max()
        .unwrap_or(0)
        .max(40)
}

// ---- durations, offsets and times -----------------------------------------------------

/// A duration for people: `42 s` under a minute, `25.2 min` from a minute on.
pub fn duration(ms: u64) -> String {
    if ms < 60_000 {
        format!("{} s", ms.div_ceil(1000).min(59).max(u64::from(ms > 0)))
    } else {
        format!("{:.1} min", ms as f64 / 60_000.0)
    }
}

/// [`duration`] of seconds, as the JSON contracts carry them.
pub fn duration_secs(seconds: f64) -> String {
    duration(millis(seconds))
}

/// Minutes with one decimal, from milliseconds, whatever the length (for columns that compare
/// durations; elsewhere [`duration`]).
pub fn minutes(ms: u64) -> String {
    sfbpatch_engine::human::minutes(ms)
}

/// Milliseconds as the seconds of the JSON contracts.
pub fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Seconds of the JSON contracts as milliseconds (negative and not-a-number as 0).
pub fn millis(seconds: f64) -> u64 {
    sfbpatch_engine::human::millis(seconds)
}

/// `T+hh:mm:ss`: milliseconds of target-clock time since a run began (hours past 99 keep
/// counting).
pub fn offset(ms: u64) -> String {
    sfbpatch_engine::human::offset(ms)
}

/// `mm:ss` of a running clock (minutes past 59 keep counting: `72:05`): the outage clock of
/// the progress bars.
pub fn stopwatch(ms: u64) -> String {
    sfbpatch_engine::human::stopwatch(ms)
}

/// Wall-clock milliseconds since the Unix epoch as the operator's local time
/// (`2026-12-04 09:12:31 CET`).
pub fn local_time(unix_ms: u64) -> String {
    let Ok(at) = jiff::Timestamp::from_millisecond(i64::try_from(unix_ms).unwrap_or(i64::MAX))
    else {
        return format!("{unix_ms} ms after the Unix epoch");
    };
    at.to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Wall-clock milliseconds since the Unix epoch as the operator's local time of day
/// (`22:03:15`), for lines that also carry the date elsewhere (the run's start).
pub fn local_time_of_day(unix_ms: u64) -> String {
    let Ok(at) = jiff::Timestamp::from_millisecond(i64::try_from(unix_ms).unwrap_or(i64::MAX))
    else {
        return format!("{unix_ms} ms");
    };
    at.to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%H:%M:%S")
        .to_string()
}

/// When a lease (or anything with an expiry) ends, for people: its local time and the seconds
/// left at `now_ms` (`2026-12-04 09:12:31 CET, 14 s left`, or `..., expired 3 s ago`).
pub fn expiry(expires_at_ms: u64, now_ms: u64) -> String {
    let at = local_time(expires_at_ms);
    if expires_at_ms >= now_ms {
        format!("{at}, {} s left", (expires_at_ms - now_ms).div_ceil(1000))
    } else {
        format!("{at}, expired {} s ago", (now_ms - expires_at_ms) / 1000)
    }
}

// ---- the log --------------------------------------------------------------------------

/// The crates whose lines `-v` turns up: the binary's and every `sfbpatch-*` library's (a
/// target is matched by its prefix).
const OUR_CRATES: &str = "sfbpatch";

/// The log filter from the flags: `RUST_LOG` when it is set (it wins over `-v` and `-q`);
/// else warnings and errors of every crate, and with each `-v` more of sfbpatch's own
/// (info, debug, trace); `-q`: errors only.
pub fn log_filter(verbose: u8, quiet: bool, rust_log: Option<&str>) -> String {
    if let Some(spec) = rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        return spec.to_string();
    }
    if quiet {
        return "error".to_string();
    }
    let ours = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    format!("warn,{OUR_CRATES}={ours}")
}

/// Set the log up: lines on stderr as [`log_filter`] allows (never on stdout, which carries
/// data), and with `--log-file` every line the filter allows appended to the file, with
/// timestamps and without colour. The file's filter is the same, except that without `-v`
/// and `RUST_LOG` it keeps sfbpatch's debug lines (what an overnight run needs the next
/// morning) while stderr stays as quiet as asked. Only the binary reads `RUST_LOG`.
pub fn init_log(
    verbose: u8,
    quiet: bool,
    log_file: Option<&Path>,
    color: bool,
) -> Result<(), Failure> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    set_quiet(quiet);
    let rust_log = std::env::var("RUST_LOG").ok();
    let rust_log = rust_log.as_deref().filter(|s| !s.trim().is_empty());
    let parse = |spec: &str| {
        EnvFilter::builder().parse(spec).map_err(|e| {
            Failure::bad_input(anyhow::anyhow!(
                "RUST_LOG={spec:?} is not a log filter: {e}"
            ))
        })
    };
    let stderr_spec = log_filter(verbose, quiet, rust_log);
    // Notes are printed by `note` itself: on stderr only as a note.
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(true)
        .with_filter(parse(&stderr_spec)?.and(filter_fn(|m| m.target() != NOTE_TARGET)));
    let (file_layer, file_spec) = match log_file {
        None => (None, None),
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Failure::bad_input(anyhow::anyhow!(
                        "cannot open the log file {}: {e}",
                        path.display()
                    ))
                })?;
            let spec = log_filter(verbose.max(2), false, rust_log);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .with_target(true)
                .with_thread_names(true)
                .with_filter(parse(&spec)?);
            (Some(layer), Some(spec))
        }
    };
    // A second set-up in one process (tests) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    tracing::debug!(
        stderr = %stderr_spec,
        log_file = ?log_file.map(|p| p.display().to_string()),
        file_filter = file_spec.as_deref().unwrap_or("-"),
        "log set up"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_seconds_under_a_minute_and_minutes_after() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(1), "1 s");
        assert_eq!(duration(42_000), "42 s");
        assert_eq!(duration(59_400), "59 s");
        assert_eq!(duration(60_000), "1.0 min");
        assert_eq!(duration(1_512_000), "25.2 min");
        assert_eq!(duration_secs(42.0), "42 s");
        assert_eq!(duration_secs(1512.0), "25.2 min");
        assert_eq!(duration_secs(-1.0), "0 s");
    }

    #[test]
    fn offsets_and_stopwatches() {
        assert_eq!(offset(0), "T+00:00:00");
        assert_eq!(offset(3_723_999), "T+01:02:03");
        assert_eq!(offset(100 * 3_600_000), "T+100:00:00");
        assert_eq!(stopwatch(4_325_000), "72:05");
        assert_eq!(secs(1500), 1.5);
        assert_eq!(millis(1.5), 1500);
    }

    #[test]
    fn an_expiry_says_the_seconds_left_or_since() {
        let now = 1_800_000_000_000;
        let left = expiry(now + 14_000, now);
        assert!(left.ends_with(", 14 s left"), "{left}");
        assert!(left.starts_with(&local_time(now + 14_000)), "{left}");
        assert!(!left.contains("1800000"), "no epoch milliseconds: {left}");
        assert!(expiry(now - 3_500, now).ends_with(", expired 3 s ago"));
    }

    #[test]
    fn control_characters_are_escaped_and_line_breaks_of_messages_kept() {
        assert_eq!(printable("Berlin"), "Berlin");
        assert_eq!(printable("Ber\u{1b}[2Jlin"), "Ber\\u{1b}[2Jlin");
        assert_eq!(printable("a\nb\r"), "a\\u{a}b\\u{d}");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(printable_lines("a\n  - b"), "a\n  - b");
        assert_eq!(
            printable_lines("a\u{7}\n  - b\u{1b}]0;t"),
            "a\\u{7}\n  - b\\u{1b}]0;t"
        );
    }

    #[test]
    fn rust_log_wins_and_each_v_shows_more_of_sfbpatch() {
        assert_eq!(log_filter(0, false, None), "warn,sfbpatch=warn");
        assert_eq!(log_filter(1, false, None), "warn,sfbpatch=info");
        assert_eq!(log_filter(2, false, None), "warn,sfbpatch=debug");
        assert_eq!(log_filter(5, false, None), "warn,sfbpatch=trace");
        assert_eq!(log_filter(0, true, None), "error");
        assert_eq!(log_filter(2, true, Some("russh=debug")), "russh=debug");
        assert_eq!(log_filter(1, false, Some("  ")), "warn,sfbpatch=info");
    }
}

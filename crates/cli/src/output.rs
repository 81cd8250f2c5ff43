//! Output conventions: data on stdout, messages and progress on stderr, colour only when
//! stderr is a terminal and NO_COLOR is not set.

use std::io::{IsTerminal, Write};

use crate::cli::ColorChoice;
use crate::exit::Failure;

pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
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

/// A message for the person at the terminal.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Minutes with one decimal, from milliseconds.
pub fn minutes(ms: u64) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

/// `T+hh:mm:ss` from milliseconds of target-clock time.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("T+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
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

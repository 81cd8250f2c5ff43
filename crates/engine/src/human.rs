//! Durations and clock offsets as people read them, in one place for every output (terminal,
//! reports, failure reasons), so one moment or one duration reads the same everywhere.

use crate::Millis;

/// Minutes with one decimal: `25.2 min` (for columns that compare durations and for reasons).
pub fn minutes(ms: Millis) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

/// `T+hh:mm:ss` since a run began, whole seconds cut off (not rounded, so a moment never reads
/// a second later in one output than in another); hours past 99 keep counting.
pub fn offset(ms: Millis) -> String {
    let s = ms / 1000;
    format!("T+{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `mm:ss` of a running clock; minutes past 59 keep counting (`72:05`).
pub fn stopwatch(ms: Millis) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// Seconds of the JSON contracts as milliseconds (negative and not-a-number as 0).
pub fn millis(seconds: f64) -> Millis {
    (seconds.max(0.0) * 1000.0).round() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_form_per_idea() {
        assert_eq!(minutes(1_512_000), "25.2 min");
        assert_eq!(offset(0), "T+00:00:00");
        assert_eq!(offset(3_723_999), "T+01:02:03");
        assert_eq!(offset(100 * 3_600_000), "T+100:00:00");
        assert_eq!(stopwatch(4_325_000), "72:05");
        assert_eq!(millis(1.5), 1500);
        assert_eq!(millis(-3.0), 0);
        assert_eq!(millis(f64::NAN), 0);
    }
}

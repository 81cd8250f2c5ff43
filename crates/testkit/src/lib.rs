//! What a test does when something it needs is missing: PostgreSQL, sshd, Chromium, ssh-agent or
//! the public topology samples.
//!
//! Such tests are marked `#[ignore = "needs ..."]`, so a plain `cargo test` lists them as ignored
//! with the reason, never as passed. `scripts/test` runs them too (`--include-ignored`) with
//! [`REQUIRE_ALL`] set after starting or installing what they need; there a missing service or
//! file fails the run ([`missing`] panics). Run by hand without it (`cargo test --
//! --include-ignored`), [`missing`] says `SKIPPED` on stderr and the test returns.

use std::fmt::Display;

/// Set to `1` by `scripts/test` (and so CI): everything the tests need must be there.
pub const REQUIRE_ALL: &str = "SFBPATCH_REQUIRE_ALL";

/// Whether a missing service or file must fail the test run.
pub fn required() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1")
}

/// A test cannot run here because of `why` (what is missing and how to get it). Panics under
/// [`REQUIRE_ALL`]; otherwise prints `SKIPPED: <why>` to stderr, and the caller returns.
#[track_caller]
pub fn missing(why: impl Display) {
    if required() {
        panic!("{why} ({REQUIRE_ALL}=1: scripts/test must provide it; see README, Tests)");
    }
    eprintln!("SKIPPED: {why}");
}

/// `Some(value)`, or `None` after [`missing`] with `why`.
#[track_caller]
pub fn need<T>(value: Option<T>, why: impl Display) -> Option<T> {
    if value.is_none() {
        missing(why);
    }
    value
}

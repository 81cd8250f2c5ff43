//! One integration-test binary: every test runs the real `sfbpatch` binary.

mod apply;
mod common;
mod fault_kinds;
mod faults;
mod frontend;
mod inputs;
mod lab_shell;
mod package;
mod probe;
mod refusals;
mod report;
mod rollout;
mod schedule;
mod ssh;
mod standby;
mod store_outage;
mod stores;

//! One integration-test binary: every test runs the real `sfbpatch` binary.

mod apply;
mod common;
mod contracts;
mod fault_kinds;
mod faults;
mod frontend;
mod inputs;
mod lab_shell;
mod logging;
mod operator_view;
mod package;
mod probe;
mod refusals;
mod report;
mod retry;
mod rollout;
mod schedule;
mod serve;
mod ssh;
mod ssh_summary;
mod standby;
mod store_outage;
mod stores;
mod terminal;

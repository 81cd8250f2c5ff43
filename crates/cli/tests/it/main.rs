//! One integration-test binary: every test runs the real `sfbpatch` binary.

mod apply;
mod common;
mod inputs;

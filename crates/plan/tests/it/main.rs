//! One integration-test binary for sfbpatch-plan.

mod generated;
mod json;
mod manifest;
mod planner;
mod props;
mod render;
mod support;

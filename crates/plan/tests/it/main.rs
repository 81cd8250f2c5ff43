//! One integration-test binary for sfbpatch-plan.

mod json;
mod manifest;
mod planner;
mod props;
mod render;
mod support;

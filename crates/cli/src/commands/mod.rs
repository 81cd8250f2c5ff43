pub mod apply;
pub mod demo;
pub mod generated;
pub mod lab;
pub mod plan;
pub mod policy;
pub mod status;
pub mod topology;

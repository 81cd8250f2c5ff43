//! The lab simulator.

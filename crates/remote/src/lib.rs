//! The remote protocol.

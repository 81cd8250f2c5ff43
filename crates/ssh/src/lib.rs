//! The SSH target.

//! The reference felix-wire client (work in progress).

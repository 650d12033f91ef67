//! The reference felix-wire broker (work in progress).

//! The generated codec against the run-time spec interpreter.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| felix_fuzz::differential(data));

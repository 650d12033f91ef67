//! Arbitrary frames on arbitrary streams into the sans-IO broker core.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| felix_fuzz::broker_session(data));

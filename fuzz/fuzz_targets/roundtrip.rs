//! An arbitrary frame: encode -> decode gives it back; decode -> encode is stable.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| felix_fuzz::roundtrip(data));

//! A JSON payload into the JSON message decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| felix_fuzz::json_message(data));

//! Raw bytes, fed in pieces, into the streaming frame decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| felix_fuzz::frame_stream(data));

//! A payload into the `binary_publish_batch` decoder (first byte picks the offsets variant where there is one).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| felix_fuzz::binary_payload(
    felix_fuzz::Layout::PublishBatch,
    data
));

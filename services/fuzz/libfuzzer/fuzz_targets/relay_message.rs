//! See `liverelay_fuzz::relay_message`: the target and its checks live there, where
//! `cargo test` replays the committed corpus through them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| liverelay_fuzz::relay_message::fuzz(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| secret_gate_fuzz_props::safe_response::safe_response(data));

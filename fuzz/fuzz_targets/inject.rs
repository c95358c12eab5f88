#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| secret_gate_fuzz_props::inject::inject(data));

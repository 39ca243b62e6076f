//! Dockerfile parser and instruction decoder: any bytes, no panic, no hang.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rbuild::fuzzing::dockerfile(data);
});

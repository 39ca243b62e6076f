//! `.dockerignore` patterns and matching: any bytes, no panic, no hang.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rbuild::fuzzing::dockerignore(data);
});

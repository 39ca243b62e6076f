//! Applying a layer tar onto a directory: any bytes, no panic, nothing outside the root.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rbuild::fuzzing::layer_tar(data);
});

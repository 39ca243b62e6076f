//! Shell-word lexer (variable expansion, quotes, escapes): any bytes, no panic, no hang.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rbuild::fuzzing::shell_lex(data);
});

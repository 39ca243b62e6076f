//! The `rbuild` binary: everything lives in the library's `cli` module.
fn main() -> std::process::ExitCode {
    rbuild::cli::run()
}

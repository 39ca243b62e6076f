//! The `rbuild` binary: everything lives in the library's `cli` module, except the RUN
//! sandbox helper, which rbuild starts as `rbuild __sandbox SPEC` inside new namespaces.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "__sandbox" {
        let code = rbuild::exec::sandbox::main(&args[2]);
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    rbuild::cli::run()
}

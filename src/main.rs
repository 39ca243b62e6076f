//! The `rbuild` binary: everything lives in the library's `cli` module, except the RUN
//! sandbox helper, which rbuild starts as `rbuild __sandbox SPEC` inside new namespaces, and
//! entering a user namespace when run by an ordinary user.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "__sandbox" {
        let code = rbuild::exec::sandbox::main(&args[2]);
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    // An ordinary user builds in a user namespace of its own (RUN needs one); first, while
    // the process has one thread.
    if args.get(1).is_none_or(|a| {
        !matches!(
            a.as_str(),
            "login" | "logout" | "--help" | "-h" | "--version" | "-V"
        )
    }) {
        rbuild::exec::rootless::enter();
    }
    rbuild::cli::run()
}

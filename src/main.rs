//! The `rbuild` binary: everything lives in the library's `cli` module, except the RUN
//! sandbox helper, which rbuild starts as `rbuild __sandbox SPEC` inside new namespaces, and
//! entering a user namespace when run by an ordinary user.
fn main() -> std::process::ExitCode {
    one_malloc_arena();
    report_bugs_as_bugs();
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

/// glibc gives each thread that allocates an arena of its own (up to 8 per core); memory freed
/// in one is not reused by another, so the hashing and compression threads pushed peak RSS on
/// a 200,000-file context from 155 MB (one arena) to 217 MB with no gain in speed. One arena,
/// unless `MALLOC_ARENA_MAX` says otherwise.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// A panic is a bug in rbuild, never the user's input: say so under the panic message, so the
/// report carries what a maintainer needs instead of leaving the user to guess what to fix.
fn report_bugs_as_bugs() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!(
            "error: rbuild hit an internal error (a bug in rbuild, not in your input)\n  \
             hint: please report it with the command line and the output of `rbuild --debug ...`; \
             the store is left consistent (`rbuild check` verifies it)"
        );
    }));
}

//! The `hookgate` binary: parse the command line, run it, exit 0 / 1 (user error) / 2 (runtime).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookgate::cli::main()
}

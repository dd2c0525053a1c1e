//! The `hookgate` binary: parse the command line, run it, exit 0 / 1 (user error) / 2 (runtime).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line is the binary's, not the library's: one file per subcommand, each a user of
/// the library like any other (`serve` runs a [`hookgate::Gateway`]).
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

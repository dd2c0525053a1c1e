//! The `hookgate` binary: parse the command line, run it, exit 0 / 1 (user error) / 2 (runtime).

fn main() -> std::process::ExitCode {
    hookgate::cli::main()
}

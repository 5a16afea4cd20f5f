//! The `recorder` command; see [`recorder::cli`].

fn main() -> std::process::ExitCode {
    recorder::cli::main()
}

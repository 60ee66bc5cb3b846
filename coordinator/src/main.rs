//! The `switchyard` command; see docs/cli.md.

fn main() {
    std::process::exit(switchyard::cli::main());
}

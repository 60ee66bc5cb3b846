//! The `switchyard` command.

fn main() {
    eprintln!("switchyard: not built yet");
    std::process::exit(2);
}

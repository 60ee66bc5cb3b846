//! `topocheck`: lint topology files; refuse a topology that cannot survive
//! the loss of a region. Exit status: 0 no errors, 1 rule errors, 2 a file
//! could not be read or parsed (or the command line is wrong).

use clap::{Parser, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard_topology::{check_path, exit_code, human, json, rules, sarif, CheckOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// rustc-style diagnostics with the source underlined.
    Human,
    /// One JSON object per diagnostic, one per line.
    Json,
    /// A SARIF 2.1.0 log.
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

/// Lint Switchyard topology files: refuse a topology that cannot survive the
/// loss of a region.
#[derive(Debug, Parser)]
#[command(
    name = "topocheck",
    version,
    after_help = "Exit status: 0 no errors (warnings allowed), 1 rule errors found, 2 a file could not be read or parsed.\nRules: topocheck --list-rules; documentation: topocheck --explain CODE."
)]
struct Cli {
    /// Topology files to check.
    #[arg(required_unless_present_any = ["explain", "list_rules"])]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Number of regions that may be lost at the same time.
    #[arg(long, default_value_t = 1, value_name = "N")]
    tolerate: usize,
    /// Treat warnings as errors (exit 1).
    #[arg(long)]
    deny_warnings: bool,
    /// Colour human output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Print the documentation of a rule (code such as TC101, or name) and exit.
    #[arg(long, value_name = "CODE", conflicts_with = "list_rules")]
    explain: Option<String>,
    /// List every rule and exit.
    #[arg(long)]
    list_rules: bool,
    /// Directory SARIF URIs are relative to (`%SRCROOT%`); default: the git
    /// repository holding the current directory, else the directory itself.
    #[arg(long, value_name = "DIR")]
    sarif_root: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    if let Some(code) = &cli.explain {
        return match rules::find(code) {
            Some(rule) => {
                let _ = stdout.write_all(rules::explain(rule).as_bytes());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("topocheck: no rule `{code}`; `topocheck --list-rules` lists them");
                ExitCode::from(2)
            }
        };
    }
    if cli.list_rules {
        for r in rules::ALL {
            let _ = writeln!(
                stdout,
                "{}  {:<8} {:<28} {}",
                r.code,
                r.severity.as_str(),
                r.name,
                r.summary
            );
        }
        return ExitCode::SUCCESS;
    }
    let opts = CheckOptions {
        tolerate: cli.tolerate,
    };
    let reports: Vec<_> = cli.files.iter().map(|f| check_path(f, &opts)).collect();
    let out = match cli.format {
        Format::Human => {
            let color = match cli.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            human::render(&reports, color)
        }
        Format::Json => json::render(&reports),
        Format::Sarif => {
            let locator = match &cli.sarif_root {
                Some(root) => sarif::Locator::new(
                    root,
                    &std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                ),
                None => sarif::Locator::from_current_dir(),
            };
            sarif::render_with(&reports, &locator)
        }
    };
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    // Exit without freeing the parsed topologies: tearing down 10,000
    // members costs more than the OS reclaiming the whole heap at once.
    std::process::exit(exit_code(&reports, cli.deny_warnings))
}

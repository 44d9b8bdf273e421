//! image-automation-controller: Flux-compatible image update automation.

mod update;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command line of the controller binary.
#[derive(Parser)]
#[command(name = "image-automation-controller", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Update the fields marked with `$imagepolicy` comments under a directory, offline.
    Update(update::UpdateArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Update(args) => ExitCode::from(update::run(
            &args,
            std::io::stdout().lock(),
            std::io::stderr().lock(),
        )),
    }
}

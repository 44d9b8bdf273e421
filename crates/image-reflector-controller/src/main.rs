//! image-reflector-controller: the controller binary and its offline tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod select;

/// Command line of the image-reflector-controller binary.
#[derive(Parser, Debug)]
#[command(name = "image-reflector-controller", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Evaluate an ImagePolicy offline against a list of tags and print the tag it selects.
    Select(select::SelectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Select(args) => ExitCode::from(select::run(
            &args,
            std::io::stdin().lock(),
            std::io::stdout().lock(),
            std::io::stderr().lock(),
        )),
    }
}

//! image-automation-controller: applies the latest images chosen by ImagePolicies to YAML in Git
//! and pushes the commits (ImageUpdateAutomation), a drop-in for Flux's controller of the same name.
//!
//! Without a subcommand it runs the controller with Flux's flags; subcommands are offline tools.

mod controller;
mod cycle;
mod gitops;
mod message;
mod policies;
mod provider;
mod reconciler;
mod run_once;
mod securejoin;
mod source;
mod update;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use runtime::features::{AUTOMATION_GATES, help_table};
use runtime::flags::AutomationFlags;

/// Command line: the controller flags at top level, or an offline subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "image-automation-controller",
    version,
    about = "Updates image references in Git from ImagePolicies (Flux image-automation-controller, drop-in).",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Controller flags.
    #[command(flatten)]
    flags: AutomationFlags,

    /// Offline subcommand; none runs the controller.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Offline subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Update the fields marked with `$imagepolicy` comments under a directory, offline.
    Update(update::UpdateArgs),
    /// Run one automation cycle without a cluster: scan, select, update, commit and push.
    #[command(after_help = run_once::EXIT_CODES_HELP)]
    RunOnce(run_once::RunOnceArgs),
}

fn main() -> ExitCode {
    let cmd = Cli::command().after_help(help_table(AUTOMATION_GATES));
    let cli = Cli::from_arg_matches(&cmd.clone().get_matches()).unwrap_or_else(|e| e.exit());
    if let Some(command) = cli.command {
        return match command {
            Command::Update(args) => ExitCode::from(update::run(
                &args,
                std::io::stdout().lock(),
                std::io::stderr().lock(),
            )),
            Command::RunOnce(args) => ExitCode::from(run_once::run(
                &args,
                std::io::stdout().lock(),
                std::io::stderr().lock(),
            )),
        };
    }
    runtime::app::start(
        controller::CONTROLLER_NAME,
        cmd,
        cli.flags,
        controller::controllers,
    )
}

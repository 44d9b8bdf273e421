//! image-reflector-controller: scans container registries for tags (ImageRepository) and
//! resolves the latest image per ImagePolicy, a drop-in for Flux's controller of the same name.
//!
//! Without a subcommand it runs the controller with Flux's flags; subcommands are offline tools.

use image_reflector_controller::{controller, select};

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use runtime::features::{REFLECTOR_GATES, help_table};
use runtime::flags::ReflectorFlags;

/// Command line: the controller flags at top level, or an offline subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "image-reflector-controller",
    version,
    about = "Scans image registries and resolves ImagePolicies (Flux image-reflector-controller, drop-in).",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Controller flags.
    #[command(flatten)]
    flags: ReflectorFlags,

    /// Tags asked for per page when listing a repository (upstream's 1000; ECR rejects more).
    /// Hidden: lets tests exercise `Link` paging with small pages.
    #[arg(long, hide = true, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    registry_page_size: u32,

    /// Offline subcommand; none runs the controller.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Offline subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate an ImagePolicy offline against a list of tags and print the tag it selects.
    Select(select::SelectArgs),
}

fn main() -> ExitCode {
    let cmd = Cli::command().after_help(help_table(REFLECTOR_GATES));
    let cli = Cli::from_arg_matches(&cmd.clone().get_matches()).unwrap_or_else(|e| e.exit());
    if let Some(command) = cli.command {
        return match command {
            Command::Select(args) => ExitCode::from(select::run(
                &args,
                std::io::stdin().lock(),
                std::io::stdout().lock(),
                std::io::stderr().lock(),
            )),
        };
    }
    if let Err(e) = install_cloud_auth(&cli.flags) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let page_size = cli.registry_page_size;
    runtime::app::start(
        controller::CONTROLLER_NAME,
        cmd,
        cli.flags,
        move |started, flags, namespace| {
            controller::controllers(started, flags, namespace, page_size)
        },
    )
}

/// Installs the registry credential context from the flags: cloud identity from the process
/// environment, the allowed credential helpers, the token cache bounds and object-level workload
/// identity (gate `ObjectLevelWorkloadIdentity`, `--default-service-account`).
fn install_cloud_auth(flags: &ReflectorFlags) -> Result<(), String> {
    let helpers = registry::CredentialHelpers::new(
        flags.allowed_credential_helpers.clone(),
        registry::cloud::DEFAULT_HELPER_TIMEOUT,
    )
    .map_err(|e| format!("invalid --allowed-credential-helpers: {e}"))?;
    let limits = registry::CacheLimits {
        max_entries: usize::try_from(flags.common.token_cache_max_size).unwrap_or(0),
        max_duration: Some(flags.common.token_cache_max_duration),
    };
    // Invalid flags stop the controller at start with their own message; here they only mean "off".
    let object_level = registry::ObjectLevelIdentity {
        enabled: flags
            .validate()
            .is_ok_and(|g| g.enabled(runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY)),
        default_service_account: Some(flags.common.default_service_account.clone())
            .filter(|s| !s.is_empty()),
    };
    let context = registry::AuthContext::new(registry::CloudEnv::from_env(), helpers)
        .with_cache_limits(limits)
        .with_object_level_identity(object_level);
    registry::AuthContext::install_global(context)
        .map_err(|_| "the registry credential context was already installed".to_string())
}

//! Command-line flags with Flux's names, defaults and `--flag=value` syntax.
//!
//! [`CommonFlags`] holds every flag both controllers share (the `fluxcd/pkg/runtime` option groups
//! plus the addresses); [`ReflectorFlags`] and [`AutomationFlags`] add each controller's own.
//! Boolean flags behave like pflag booleans: `--x` means true, `--x=false` sets false, and a
//! following word is never consumed as the value.

use std::time::Duration;

use clap::Args;

use crate::features::{self, FeatureGates, Gate};

/// Every flag upstream image-reflector-controller accepts (v1.2), by name.
pub const REFLECTOR_UPSTREAM_FLAGS: &[&str] = &[
    "metrics-addr",
    "events-addr",
    "health-addr",
    "storage-path",
    "storage-value-log-file-size",
    "storage-compression-threshold",
    "gc-interval",
    "concurrent",
    "requeue-dependency",
    "kube-api-qps",
    "kube-api-burst",
    "log-encoding",
    "log-level",
    "enable-leader-election",
    "leader-election-release-on-cancel",
    "leader-election-lease-duration",
    "leader-election-renew-deadline",
    "leader-election-retry-period",
    "no-cross-namespace-refs",
    "min-retry-delay",
    "max-retry-delay",
    "feature-gates",
    "watch-all-namespaces",
    "watch-label-selector",
    "watch-configs-label-selector",
    "token-cache-max-size",
    "token-cache-max-duration",
    "default-service-account",
];

/// Every flag upstream image-automation-controller accepts (v1.2), by name.
pub const AUTOMATION_UPSTREAM_FLAGS: &[&str] = &[
    "metrics-addr",
    "events-addr",
    "health-addr",
    "concurrent",
    "default-service-account",
    "ssh-kex-algos",
    "ssh-hostkey-algos",
    "kube-api-qps",
    "kube-api-burst",
    "log-encoding",
    "log-level",
    "enable-leader-election",
    "leader-election-release-on-cancel",
    "leader-election-lease-duration",
    "leader-election-renew-deadline",
    "leader-election-retry-period",
    "no-cross-namespace-refs",
    "min-retry-delay",
    "max-retry-delay",
    "feature-gates",
    "watch-all-namespaces",
    "watch-label-selector",
    "watch-configs-label-selector",
    "token-cache-max-size",
    "token-cache-max-duration",
];

/// Where a server listens; Go's `":8080"` means every interface and `"0"` disables the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// The server is not started (controller-runtime's `"0"`).
    Disabled,
    /// `host:port` to bind; an empty host has been replaced by `0.0.0.0`.
    Addr(String),
}

impl ListenAddr {
    /// The address to bind, if any.
    pub fn as_bind(&self) -> Option<&str> {
        match self {
            ListenAddr::Disabled => None,
            ListenAddr::Addr(a) => Some(a),
        }
    }
}

/// Parses a Go listen address (`:8080`, `127.0.0.1:8080`, `[::1]:9440`, `0`).
pub fn parse_listen_addr(s: &str) -> Result<ListenAddr, String> {
    if s == "0" {
        return Ok(ListenAddr::Disabled);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "address '{s}' has no port; use host:port, :port or 0 to disable"
        ));
    };
    port.parse::<u16>()
        .map_err(|_| format!("address '{s}' has an invalid port '{port}'"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok(ListenAddr::Addr(format!("{host}:{port}")))
}

/// Parses a pflag boolean value (Go `strconv.ParseBool`).
pub fn parse_bool_flag(s: &str) -> Result<bool, String> {
    features::parse_go_bool(s).ok_or_else(|| {
        format!("invalid boolean '{s}' (use true/false, 1/0, t/f, TRUE/FALSE, True/False)")
    })
}

/// Parses a Go duration flag value (`750ms`, `15m`, `1h30m`, `0`).
pub fn parse_duration_flag(s: &str) -> Result<Duration, String> {
    api::parse_go_duration(s).map_err(|e| e.to_string())
}

/// Parses a label selector flag value, checking its syntax as the API server would.
pub fn parse_label_selector(s: &str) -> Result<String, String> {
    crate::selector::validate(s).map(|()| s.to_string())
}

/// Parses one `--feature-gates` value.
fn parse_gates(s: &str) -> Result<Vec<(String, bool)>, String> {
    features::parse_assignments(s).map_err(|e| e.to_string())
}

/// Log verbosity, as Flux's `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Everything, including trace events.
    Trace,
    /// Debug and above.
    Debug,
    /// Info and above (default).
    Info,
    /// Errors only.
    Error,
}

/// Log encoding, as Flux's `--log-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogEncoding {
    /// One JSON object per line (default).
    Json,
    /// Human-readable lines.
    Console,
}

/// Flags shared by both controllers, with upstream names and defaults.
#[derive(Debug, Clone, Args)]
pub struct CommonFlags {
    /// The address the metric endpoint binds to ("0" disables it).
    #[arg(long, default_value = ":8080", value_parser = parse_listen_addr)]
    pub metrics_addr: ListenAddr,

    /// The address of the events receiver (notification-controller); empty disables forwarding.
    #[arg(long, default_value = "", value_parser = parse_events_addr)]
    pub events_addr: String,

    /// The address the health endpoint binds to ("0" disables it).
    #[arg(long, default_value = ":9440", value_parser = parse_listen_addr)]
    pub health_addr: ListenAddr,

    /// The number of concurrent resource reconciles.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent: u16,

    /// Path to a kubeconfig. Only required if out-of-cluster (KUBECONFIG and ~/.kube/config are also tried).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// The maximum queries-per-second of requests sent to the Kubernetes API (accepted; the API server's
    /// priority-and-fairness does the throttling, as Flux does when APF is on).
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f32,

    /// The maximum burst queries-per-second of requests sent to the Kubernetes API (accepted, see --kube-api-qps).
    #[arg(long, default_value_t = 300)]
    pub kube_api_burst: i32,

    /// Log encoding format. Can be 'json' or 'console'.
    #[arg(long, value_enum, default_value = "json")]
    pub log_encoding: LogEncoding,

    /// Log verbosity level. Can be one of 'trace', 'debug', 'info', 'error'.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Enable leader election for controller manager. Enabling this will ensure there is only one active controller manager.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_bool_flag)]
    pub enable_leader_election: bool,

    /// Defines if the leader should step down voluntarily on controller manager shutdown.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = parse_bool_flag)]
    pub leader_election_release_on_cancel: bool,

    /// Interval at which non-leader candidates will wait to force acquire leadership (duration string).
    #[arg(long, default_value = "35s", value_parser = parse_duration_flag)]
    pub leader_election_lease_duration: Duration,

    /// Duration that the leading controller manager will retry refreshing leadership before giving up (duration string).
    #[arg(long, default_value = "30s", value_parser = parse_duration_flag)]
    pub leader_election_renew_deadline: Duration,

    /// Duration the LeaderElector clients should wait between tries of actions (duration string).
    #[arg(long, default_value = "5s", value_parser = parse_duration_flag)]
    pub leader_election_retry_period: Duration,

    /// When set to true, references between custom resources are allowed only if the reference and the referee are in the same namespace.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_bool_flag)]
    pub no_cross_namespace_refs: bool,

    /// The minimum amount of time for which an object being reconciled will have to wait before a retry.
    #[arg(long, default_value = "750ms", value_parser = parse_duration_flag)]
    pub min_retry_delay: Duration,

    /// The maximum amount of time for which an object being reconciled will have to wait before a retry.
    #[arg(long, default_value = "15m", value_parser = parse_duration_flag)]
    pub max_retry_delay: Duration,

    /// A comma separated list of key=value pairs defining the state of experimental features (repeatable).
    #[arg(long, value_parser = parse_gates, action = clap::ArgAction::Append)]
    pub feature_gates: Vec<Vec<(String, bool)>>,

    /// Watch for resources in all namespaces, if set to false it will only watch the runtime namespace ($RUNTIME_NAMESPACE).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = parse_bool_flag)]
    pub watch_all_namespaces: bool,

    /// Watch for resources with matching labels e.g. 'sharding.fluxcd.io/shard=shard1'.
    #[arg(long, default_value = "", value_parser = parse_label_selector)]
    pub watch_label_selector: String,

    /// Watch for ConfigMaps and Secrets with matching labels (accepted; unused, as upstream).
    #[arg(long, default_value = "reconcile.fluxcd.io/watch=Enabled", value_parser = parse_label_selector)]
    pub watch_configs_label_selector: String,

    /// The maximum size of the cache in number of tokens (0 disables the cache).
    #[arg(long, default_value_t = 100)]
    pub token_cache_max_size: i64,

    /// The maximum duration a token is cached.
    #[arg(long, default_value = "1h", value_parser = parse_duration_flag)]
    pub token_cache_max_duration: Duration,

    /// Default service account to use for workload identity when not specified in resources.
    #[arg(long, default_value = "")]
    pub default_service_account: String,
}

fn parse_events_addr(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    reqwest::Url::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("'{s}' is not a valid URL: {e}"))
}

/// A flag combination that upstream refuses at startup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// A `--feature-gates` problem (unknown gate, bad pair).
    #[error(transparent)]
    Gate(#[from] features::GateError),
    /// `--default-service-account` without the gate (upstream wording).
    #[error(
        "cannot set default service accounts when the feature gate ObjectLevelWorkloadIdentity is not enabled"
    )]
    DefaultServiceAccountWithoutGate,
    /// Inconsistent leader-election timings (client-go's validation).
    #[error("invalid leader election timings: {0}")]
    LeaderElection(String),
    /// `--min-retry-delay` above `--max-retry-delay`.
    #[error("--min-retry-delay ({min:?}) must not exceed --max-retry-delay ({max:?})")]
    RetryDelays {
        /// The minimum.
        min: Duration,
        /// The maximum.
        max: Duration,
    },
    /// A controller-specific rule.
    #[error("{0}")]
    Invalid(String),
}

impl CommonFlags {
    /// Resolves `--feature-gates` against a controller's gate table and checks cross-flag rules.
    pub fn validate(&self, table: &'static [Gate]) -> Result<FeatureGates, FlagError> {
        let assignments: Vec<(String, bool)> =
            self.feature_gates.iter().flatten().cloned().collect();
        let gates = FeatureGates::resolve(table, &assignments)?;
        if !self.default_service_account.is_empty()
            && !gates.enabled(features::OBJECT_LEVEL_WORKLOAD_IDENTITY)
        {
            return Err(FlagError::DefaultServiceAccountWithoutGate);
        }
        let (lease, renew, retry) = (
            self.leader_election_lease_duration,
            self.leader_election_renew_deadline,
            self.leader_election_retry_period,
        );
        if lease.is_zero() || renew.is_zero() || retry.is_zero() {
            return Err(FlagError::LeaderElection(
                "lease duration, renew deadline and retry period must be greater than zero".into(),
            ));
        }
        if lease <= renew {
            return Err(FlagError::LeaderElection(format!(
                "lease duration ({lease:?}) must be greater than renew deadline ({renew:?})"
            )));
        }
        // client-go: renewDeadline > JitterFactor(1.2) * retryPeriod.
        if renew.as_secs_f64() <= 1.2 * retry.as_secs_f64() {
            return Err(FlagError::LeaderElection(format!(
                "renew deadline ({renew:?}) must be greater than 1.2 × retry period ({retry:?})"
            )));
        }
        if self.min_retry_delay > self.max_retry_delay {
            return Err(FlagError::RetryDelays {
                min: self.min_retry_delay,
                max: self.max_retry_delay,
            });
        }
        Ok(gates)
    }

    /// The lease name of `controller` under these flags (see [`lease_name`]).
    pub fn lease_name(&self, controller: &str) -> String {
        lease_name(controller, &self.watch_label_selector)
    }

    /// The namespace to watch: `None` for all namespaces, else `$RUNTIME_NAMESPACE`.
    pub fn watch_namespace(&self) -> Result<Option<String>, FlagError> {
        if self.watch_all_namespaces {
            return Ok(None);
        }
        match std::env::var("RUNTIME_NAMESPACE") {
            Ok(ns) if !ns.is_empty() => Ok(Some(ns)),
            _ => Err(FlagError::Invalid(
                "--watch-all-namespaces=false needs the RUNTIME_NAMESPACE environment variable"
                    .into(),
            )),
        }
    }
}

/// image-reflector-controller flags: the shared ones plus storage and dependency requeue.
#[derive(Debug, Clone, Args)]
pub struct ReflectorFlags {
    /// Flags shared with image-automation-controller.
    #[command(flatten)]
    pub common: CommonFlags,

    /// Where to store the persistent database of image metadata.
    #[arg(long, default_value = "/data")]
    pub storage_path: std::path::PathBuf,

    /// Badger value log file size in bytes (accepted and ignored: there is no Badger database here).
    #[arg(long, default_value_t = 1 << 28)]
    pub storage_value_log_file_size: i64,

    /// Minimum uncompressed tag data size in KiB before filesystem storage compresses it.
    #[arg(long, default_value_t = 64)]
    pub storage_compression_threshold: i64,

    /// The number of minutes to wait between garbage collections. 0 disables the garbage collector.
    #[arg(long, default_value_t = 10)]
    pub gc_interval: u16,

    /// The interval at which failing dependencies are reevaluated.
    #[arg(long, default_value = "30s", value_parser = parse_duration_flag)]
    pub requeue_dependency: Duration,

    /// Docker credential helpers (`docker-credential-<name>`) that pull secrets may name in
    /// `credHelpers`/`credsStore`; none by default, so a tenant cannot make the controller run a binary.
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Append)]
    pub allowed_credential_helpers: Vec<String>,
}

impl ReflectorFlags {
    /// Validates all flags; returns the resolved gates.
    pub fn validate(&self) -> Result<FeatureGates, FlagError> {
        let gates = self.common.validate(features::REFLECTOR_GATES)?;
        if gates.enabled(features::FLUX_STORAGE) && self.storage_compression_threshold <= 0 {
            return Err(FlagError::Invalid(
                "invalid --storage-compression-threshold: value must be greater than zero".into(),
            ));
        }
        Ok(gates)
    }
}

/// image-automation-controller flags: the shared ones plus SSH algorithm preferences.
#[derive(Debug, Clone, Args)]
pub struct AutomationFlags {
    /// Flags shared with image-reflector-controller.
    #[command(flatten)]
    pub common: CommonFlags,

    /// The list of key exchange algorithms to use for ssh connections, arranged from most preferred to the least.
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Append)]
    pub ssh_kex_algos: Vec<String>,

    /// The list of hostkey algorithms to use for ssh connections, arranged from most preferred to the least.
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Append)]
    pub ssh_hostkey_algos: Vec<String>,

    /// Directory of the Git clone cache (kept between runs; one clone per repository, credentials and
    /// push branch). It must be writable: the default is under /tmp, the writable emptyDir of the
    /// deployment.
    #[arg(
        long,
        default_value = "/tmp/image-automation-git-cache",
        value_name = "DIR"
    )]
    pub git_cache_path: std::path::PathBuf,

    /// Maximum total size in bytes of the Git clone cache; the least recently used clones are removed
    /// beyond it (0: only the clone in use is kept).
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub git_cache_max_size: u64,
}

impl AutomationFlags {
    /// Validates all flags; returns the resolved gates.
    pub fn validate(&self) -> Result<FeatureGates, FlagError> {
        self.common.validate(features::AUTOMATION_GATES)
    }
}

/// The lease name: `<controller>-leader-election`, suffixed with 8 hex digits of the SHA-256 of
/// the `--watch-label-selector` value when sharding (upstream `leaderelection.GenerateID`).
pub fn lease_name(controller: &str, watch_label_selector: &str) -> String {
    let base = format!("{controller}-leader-election");
    if watch_label_selector.is_empty() {
        return base;
    }
    use sha2::Digest;
    let sum = sha2::Sha256::digest(watch_label_selector.as_bytes());
    let hex: String = sum.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{base}-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    #[command(name = "image-reflector-controller")]
    struct Reflector {
        #[command(flatten)]
        flags: ReflectorFlags,
    }

    #[derive(Debug, Parser)]
    #[command(name = "image-automation-controller")]
    struct Automation {
        #[command(flatten)]
        flags: AutomationFlags,
    }

    fn reflector(args: &[&str]) -> Result<ReflectorFlags, clap::Error> {
        let mut v = vec!["image-reflector-controller"];
        v.extend_from_slice(args);
        Reflector::try_parse_from(v).map(|r| r.flags)
    }

    fn automation(args: &[&str]) -> Result<AutomationFlags, clap::Error> {
        let mut v = vec!["image-automation-controller"];
        v.extend_from_slice(args);
        Automation::try_parse_from(v).map(|r| r.flags)
    }

    #[test]
    fn every_upstream_flag_exists() {
        for (cmd, names, own) in [
            (
                Reflector::command(),
                REFLECTOR_UPSTREAM_FLAGS,
                &["kubeconfig", "allowed-credential-helpers"][..],
            ),
            (
                Automation::command(),
                AUTOMATION_UPSTREAM_FLAGS,
                &["kubeconfig", "git-cache-path", "git-cache-max-size"][..],
            ),
        ] {
            let ours: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect();
            for n in names {
                assert!(
                    ours.iter().any(|o| o == n),
                    "--{n} missing from {}",
                    cmd.get_name()
                );
            }
            // Ours adds only --kubeconfig, the reflector's --allowed-credential-helpers and the automation's Git
            // cache flags (plus clap's --help/--version).
            let extra: Vec<&str> = ours
                .iter()
                .map(String::as_str)
                .filter(|o| !names.contains(o))
                .collect();
            assert_eq!(extra, own, "{}", cmd.get_name());
        }
    }

    #[test]
    fn defaults_match_upstream() {
        let f = reflector(&[]).unwrap();
        let c = &f.common;
        assert_eq!(c.metrics_addr, ListenAddr::Addr("0.0.0.0:8080".into()));
        assert_eq!(c.health_addr, ListenAddr::Addr("0.0.0.0:9440".into()));
        assert_eq!(c.events_addr, "");
        assert_eq!(c.concurrent, 4);
        assert_eq!(c.kube_api_qps, 50.0);
        assert_eq!(c.kube_api_burst, 300);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.log_encoding, LogEncoding::Json);
        assert!(!c.enable_leader_election);
        assert!(c.leader_election_release_on_cancel);
        assert_eq!(c.leader_election_lease_duration, Duration::from_secs(35));
        assert_eq!(c.leader_election_renew_deadline, Duration::from_secs(30));
        assert_eq!(c.leader_election_retry_period, Duration::from_secs(5));
        assert!(!c.no_cross_namespace_refs);
        assert_eq!(c.min_retry_delay, Duration::from_millis(750));
        assert_eq!(c.max_retry_delay, Duration::from_secs(900));
        assert!(c.watch_all_namespaces);
        assert_eq!(c.watch_label_selector, "");
        assert_eq!(
            c.watch_configs_label_selector,
            "reconcile.fluxcd.io/watch=Enabled"
        );
        assert_eq!(c.token_cache_max_size, 100);
        assert_eq!(c.token_cache_max_duration, Duration::from_secs(3600));
        assert_eq!(c.default_service_account, "");
        assert_eq!(f.storage_path, std::path::PathBuf::from("/data"));
        assert!(f.allowed_credential_helpers.is_empty());
        assert_eq!(f.storage_value_log_file_size, 268_435_456);
        assert_eq!(f.storage_compression_threshold, 64);
        assert_eq!(f.gc_interval, 10);
        assert_eq!(f.requeue_dependency, Duration::from_secs(30));
        assert!(f.validate().is_ok());
        let a = automation(&[]).unwrap();
        assert!(a.ssh_kex_algos.is_empty() && a.ssh_hostkey_algos.is_empty());
        assert!(a.validate().is_ok());
    }

    #[test]
    fn upstream_deployment_args_parse() {
        // The args of Flux's config/manager Deployment.
        let f = reflector(&[
            "--watch-all-namespaces",
            "--log-level=info",
            "--log-encoding=json",
            "--enable-leader-election",
            "--allowed-credential-helpers=ecr-login,gcloud",
            "--allowed-credential-helpers=acr-env",
        ])
        .unwrap();
        assert!(f.common.enable_leader_election && f.common.watch_all_namespaces);
        assert_eq!(
            f.allowed_credential_helpers,
            vec!["ecr-login", "gcloud", "acr-env"]
        );
        let a = automation(&[
            "--watch-all-namespaces=false",
            "--log-level",
            "debug",
            "--enable-leader-election=false",
            "--ssh-kex-algos=curve25519-sha256,diffie-hellman-group14-sha256",
            "--ssh-hostkey-algos=ssh-ed25519",
            "--feature-gates=GitShallowClone=false,GitSparseCheckout=true",
            "--feature-gates=ObjectLevelWorkloadIdentity=true",
            "--default-service-account=sa",
        ])
        .unwrap();
        assert!(!a.common.watch_all_namespaces);
        assert!(!a.common.enable_leader_election);
        assert_eq!(a.common.log_level, LogLevel::Debug);
        assert_eq!(a.ssh_kex_algos.len(), 2);
        let gates = a.validate().unwrap();
        assert!(!gates.enabled(features::GIT_SHALLOW_CLONE));
        assert!(gates.enabled(features::GIT_SPARSE_CHECKOUT));
        assert!(gates.enabled(features::OBJECT_LEVEL_WORKLOAD_IDENTITY));
    }

    #[test]
    fn badger_era_flags_are_accepted() {
        let f = reflector(&[
            "--storage-value-log-file-size=1073741824",
            "--gc-interval=0",
            "--storage-path=/tmp/x",
            "--storage-compression-threshold=128",
            "--requeue-dependency=1m",
        ])
        .unwrap();
        assert_eq!(f.storage_value_log_file_size, 1 << 30);
        assert_eq!(f.gc_interval, 0);
        assert_eq!(f.requeue_dependency, Duration::from_secs(60));
    }

    #[test]
    fn unknown_gate_is_an_error_with_usage() {
        let f = reflector(&["--feature-gates=GitShallowClone=true"]).unwrap();
        let err = f.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "feature-gate 'GitShallowClone' not supported; supported gates: \
             CacheSecretsAndConfigMaps, FluxStorage, ObjectLevelWorkloadIdentity"
        );
        let rendered = Reflector::command()
            .error(ErrorKind::InvalidValue, &err)
            .render()
            .to_string();
        assert!(rendered.contains("feature-gate 'GitShallowClone' not supported"));
        assert!(rendered.contains("Usage: image-reflector-controller"));
        let a = automation(&["--feature-gates=Nope=true"]).unwrap();
        assert!(matches!(
            a.validate(),
            Err(FlagError::Gate(features::GateError::Unsupported { .. }))
        ));
        // A malformed value is a parse error already.
        let e = automation(&["--feature-gates=GitShallowClone"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn unknown_flags_and_bad_values_fail_parsing() {
        for args in [
            &["--aws-autologin-for-ecr"][..],
            &["--log-level=verbose"],
            &["--log-encoding=xml"],
            &["--min-retry-delay=5"],
            &["--metrics-addr=8080"],
            &["--enable-leader-election=maybe"],
            &["--events-addr=not a url"],
            &["--concurrent=0"],
            &["--watch-label-selector=a in (b"],
        ] {
            assert!(reflector(args).is_err(), "{args:?} should fail");
        }
        // A bool flag never swallows the next word.
        assert!(reflector(&["--enable-leader-election", "false"]).is_err());
    }

    #[test]
    fn cross_flag_rules() {
        let f = reflector(&["--default-service-account=x"]).unwrap();
        assert_eq!(
            f.validate().unwrap_err(),
            FlagError::DefaultServiceAccountWithoutGate
        );
        let f = reflector(&["--leader-election-lease-duration=10s"]).unwrap();
        assert!(matches!(f.validate(), Err(FlagError::LeaderElection(_))));
        let f = reflector(&["--min-retry-delay=1h", "--max-retry-delay=1m"]).unwrap();
        assert!(matches!(f.validate(), Err(FlagError::RetryDelays { .. })));
        let f = reflector(&[
            "--feature-gates=FluxStorage=true",
            "--storage-compression-threshold=0",
        ])
        .unwrap();
        assert!(matches!(f.validate(), Err(FlagError::Invalid(_))));
        let f = reflector(&["--storage-compression-threshold=0"]).unwrap();
        assert!(f.validate().is_ok());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_listen_addr("0"), Ok(ListenAddr::Disabled));
        assert_eq!(
            parse_listen_addr("127.0.0.1:18080"),
            Ok(ListenAddr::Addr("127.0.0.1:18080".into()))
        );
        assert_eq!(
            parse_listen_addr("[::1]:9440"),
            Ok(ListenAddr::Addr("[::1]:9440".into()))
        );
        assert!(parse_listen_addr(":http").is_err());
    }

    #[test]
    fn lease_names_as_upstream() {
        let f = reflector(&[]).unwrap();
        assert_eq!(
            f.common.lease_name("image-reflector-controller"),
            "image-reflector-controller-leader-election"
        );
        let f = reflector(&["--watch-label-selector=sharding.fluxcd.io/shard=shard1"]).unwrap();
        // sha256("sharding.fluxcd.io/shard=shard1")[:8]
        let name = f.common.lease_name("image-reflector-controller");
        assert!(name.starts_with("image-reflector-controller-leader-election-"));
        assert_eq!(
            name.len(),
            "image-reflector-controller-leader-election-".len() + 8
        );
    }

    #[test]
    fn go_durations() {
        for (s, d) in [
            ("0", Duration::ZERO),
            ("750ms", Duration::from_millis(750)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("2us", Duration::from_micros(2)),
            ("+5s", Duration::from_secs(5)),
        ] {
            assert_eq!(parse_duration_flag(s), Ok(d), "{s}");
        }
        for s in ["", "5", "1d", "-5s", ".s", "1..2s"] {
            assert!(parse_duration_flag(s).is_err(), "{s}");
        }
    }
}

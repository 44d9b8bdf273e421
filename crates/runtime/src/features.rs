//! Feature gates: every upstream gate name with its upstream default, and what each one does here.
//!
//! Flux parses `--feature-gates=Name=bool,...` (repeatable) into a map and refuses a name the
//! controller does not know with `feature-gate '<name>' not supported`. We do the same, per
//! controller, and additionally record for each gate whether it changes our behaviour or is
//! accepted and ignored because our design makes it moot.

use std::collections::BTreeMap;
use std::fmt;

/// What setting a gate does in this implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateEffect {
    /// The gate changes behaviour exactly as upstream documents.
    ChangesBehaviour,
    /// The gate is accepted (so existing manifests keep working) and ignored; the text says why.
    Ignored(&'static str),
}

/// One supported feature gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Upstream gate name, e.g. `GitForcePushBranch`.
    pub name: &'static str,
    /// Upstream default value.
    pub default: bool,
    /// What the gate does here.
    pub effect: GateEffect,
}

/// Gate: cache Secrets and ConfigMaps instead of reading them directly from the API.
pub const CACHE_SECRETS_AND_CONFIG_MAPS: &str = "CacheSecretsAndConfigMaps";
/// Gate: store tags one file per ImageRepository (image-reflector-controller v1.2+).
pub const FLUX_STORAGE: &str = "FluxStorage";
/// Gate: allow `serviceAccountName` for cloud-provider workload identity on objects.
pub const OBJECT_LEVEL_WORKLOAD_IDENTITY: &str = "ObjectLevelWorkloadIdentity";
/// Gate: force-push the push branch when it differs from the checkout branch.
pub const GIT_FORCE_PUSH_BRANCH: &str = "GitForcePushBranch";
/// Gate: depth-1 clones.
pub const GIT_SHALLOW_CLONE: &str = "GitShallowClone";
/// Gate: fetch all branch heads when switching branches (flux2#3384).
pub const GIT_ALL_BRANCH_REFERENCES: &str = "GitAllBranchReferences";
/// Gate: sparse checkout of `spec.update.path`.
pub const GIT_SPARSE_CHECKOUT: &str = "GitSparseCheckout";

const CACHE_IGNORED: &str = "Secrets and ConfigMaps are always read directly from the API server \
     (the gate-off behaviour, least memory and least RBAC); caching them would only cost memory";
const OLWI_EFFECT: GateEffect = GateEffect::ChangesBehaviour;

/// Gates of image-reflector-controller (upstream `internal/features` plus `fluxcd/pkg/auth`).
pub const REFLECTOR_GATES: &[Gate] = &[
    Gate {
        name: CACHE_SECRETS_AND_CONFIG_MAPS,
        default: false,
        effect: GateEffect::Ignored(CACHE_IGNORED),
    },
    Gate {
        name: FLUX_STORAGE,
        default: false,
        effect: GateEffect::Ignored(
            "tags are always stored one file per ImageRepository with sha256 revisions (the gate-on \
             layout); there is no Badger database to switch from, so toggling never wipes the store",
        ),
    },
    Gate {
        name: OBJECT_LEVEL_WORKLOAD_IDENTITY,
        default: false,
        effect: OLWI_EFFECT,
    },
];

/// Gates of image-automation-controller (upstream `internal/features` plus `fluxcd/pkg/auth`).
pub const AUTOMATION_GATES: &[Gate] = &[
    Gate {
        name: GIT_FORCE_PUSH_BRANCH,
        default: true,
        effect: GateEffect::ChangesBehaviour,
    },
    Gate {
        name: GIT_SHALLOW_CLONE,
        default: true,
        effect: GateEffect::Ignored(
            "clones come from a persistent local mirror that is fetched incrementally; a cold mirror \
             may be seeded shallow either way, so the gate changes nothing observable",
        ),
    },
    Gate {
        name: GIT_ALL_BRANCH_REFERENCES,
        default: true,
        effect: GateEffect::ChangesBehaviour,
    },
    Gate {
        name: GIT_SPARSE_CHECKOUT,
        default: false,
        effect: GateEffect::Ignored(
            "worktrees are checked out from the local mirror, so a sparse checkout would save no \
             network traffic; only files under spec.update.path are ever edited either way",
        ),
    },
    Gate {
        name: CACHE_SECRETS_AND_CONFIG_MAPS,
        default: false,
        effect: GateEffect::Ignored(CACHE_IGNORED),
    },
    Gate {
        name: OBJECT_LEVEL_WORKLOAD_IDENTITY,
        default: false,
        effect: OLWI_EFFECT,
    },
];

/// Why a `--feature-gates` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// An item without `=`; upstream says `malformed pair, expect string=bool`.
    #[error("malformed pair '{0}', expect string=bool")]
    Malformed(String),
    /// The value is not a Go `strconv.ParseBool` boolean.
    #[error(
        "invalid value of {name}: {value}, expected one of 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False"
    )]
    InvalidBool {
        /// Gate name.
        name: String,
        /// The rejected value.
        value: String,
    },
    /// The gate name is not one this controller supports (upstream wording).
    #[error("feature-gate '{name}' not supported; supported gates: {supported}")]
    Unsupported {
        /// The unknown name.
        name: String,
        /// Comma-separated list of supported gate names.
        supported: String,
    },
}

/// Parses a Go `strconv.ParseBool` value.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses one `--feature-gates` value (`k=v,k2=v2`, empty items skipped, spaces trimmed) into
/// assignments, in order. Names are not checked here; see [`FeatureGates::resolve`].
pub fn parse_assignments(value: &str) -> Result<Vec<(String, bool)>, GateError> {
    let mut out = Vec::new();
    for item in value.split(',') {
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(GateError::Malformed(item.to_string()));
        };
        let (k, v) = (k.trim(), v.trim());
        let b = parse_go_bool(v).ok_or_else(|| GateError::InvalidBool {
            name: k.to_string(),
            value: v.to_string(),
        })?;
        out.push((k.to_string(), b));
    }
    Ok(out)
}

/// The resolved state of every gate of one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureGates {
    table: &'static [Gate],
    values: BTreeMap<&'static str, bool>,
}

impl FeatureGates {
    /// Applies `assignments` (later ones win) over the defaults of `table`.
    pub fn resolve(
        table: &'static [Gate],
        assignments: &[(String, bool)],
    ) -> Result<Self, GateError> {
        let mut values: BTreeMap<&'static str, bool> =
            table.iter().map(|g| (g.name, g.default)).collect();
        for (name, value) in assignments {
            let gate =
                table
                    .iter()
                    .find(|g| g.name == name)
                    .ok_or_else(|| GateError::Unsupported {
                        name: name.clone(),
                        supported: table.iter().map(|g| g.name).collect::<Vec<_>>().join(", "),
                    })?;
            values.insert(gate.name, *value);
        }
        Ok(Self { table, values })
    }

    /// Whether `name` is enabled; `false` for a name this controller does not have.
    pub fn enabled(&self, name: &str) -> bool {
        self.values.get(name).copied().unwrap_or(false)
    }

    /// Gates whose value differs from the default, with their effect (for the startup log).
    pub fn changed(&self) -> impl Iterator<Item = (&'static Gate, bool)> + '_ {
        self.table.iter().filter_map(|g| {
            let v = self.enabled(g.name);
            (v != g.default).then_some((g, v))
        })
    }
}

impl fmt::Display for FeatureGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Renders the gate table of a controller for `--help`.
pub fn help_table(table: &[Gate]) -> String {
    let mut s = String::from("Feature gates (--feature-gates=Name=bool,...):\n");
    for g in table {
        let effect = match g.effect {
            GateEffect::ChangesBehaviour => "changes behaviour as upstream".to_string(),
            GateEffect::Ignored(why) => format!("accepted and ignored: {why}"),
        };
        s.push_str(&format!(
            "  {} (default {}): {}\n",
            g.name, g.default, effect
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_follow_map_string_bool() {
        assert_eq!(
            parse_assignments(" GitShallowClone = false ,,FluxStorage=T").unwrap(),
            vec![
                ("GitShallowClone".to_string(), false),
                ("FluxStorage".to_string(), true)
            ]
        );
        assert_eq!(parse_assignments("").unwrap(), vec![]);
        assert!(matches!(
            parse_assignments("FluxStorage"),
            Err(GateError::Malformed(_))
        ));
        assert!(matches!(
            parse_assignments("FluxStorage=yes"),
            Err(GateError::InvalidBool { .. })
        ));
    }

    #[test]
    fn defaults_and_overrides() {
        let g = FeatureGates::resolve(AUTOMATION_GATES, &[]).unwrap();
        assert!(g.enabled(GIT_FORCE_PUSH_BRANCH));
        assert!(g.enabled(GIT_SHALLOW_CLONE));
        assert!(g.enabled(GIT_ALL_BRANCH_REFERENCES));
        assert!(!g.enabled(GIT_SPARSE_CHECKOUT));
        assert!(!g.enabled(OBJECT_LEVEL_WORKLOAD_IDENTITY));
        let g = FeatureGates::resolve(
            AUTOMATION_GATES,
            &[
                (GIT_FORCE_PUSH_BRANCH.into(), false),
                (GIT_FORCE_PUSH_BRANCH.into(), true),
                (GIT_SPARSE_CHECKOUT.into(), true),
            ],
        )
        .unwrap();
        assert!(g.enabled(GIT_FORCE_PUSH_BRANCH));
        assert!(g.enabled(GIT_SPARSE_CHECKOUT));
        assert_eq!(
            g.changed().map(|(g, _)| g.name).collect::<Vec<_>>(),
            vec![GIT_SPARSE_CHECKOUT]
        );
    }

    #[test]
    fn unknown_gate_is_refused_per_controller() {
        // A Git gate is not a reflector gate, exactly as upstream.
        let err = FeatureGates::resolve(REFLECTOR_GATES, &[(GIT_SHALLOW_CLONE.into(), true)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "feature-gate 'GitShallowClone' not supported; supported gates: \
             CacheSecretsAndConfigMaps, FluxStorage, ObjectLevelWorkloadIdentity"
        );
        let err =
            FeatureGates::resolve(AUTOMATION_GATES, &[(FLUX_STORAGE.into(), true)]).unwrap_err();
        assert!(matches!(err, GateError::Unsupported { .. }));
    }

    #[test]
    fn every_gate_is_documented_in_help() {
        for table in [REFLECTOR_GATES, AUTOMATION_GATES] {
            let help = help_table(table);
            for g in table {
                assert!(help.contains(g.name), "{} missing from help", g.name);
            }
        }
    }
}

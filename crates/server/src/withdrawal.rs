//! The withdrawal guard: a reload that would take away much of the configuration at once is
//! more likely an accident (a config root removed or not mounted yet, a partial sync, a
//! `git checkout` of the wrong branch) than an intent, and applying it would make every
//! proxy drop the routes, clusters and listeners of those resources at once.
//!
//! So, after [`crate::store::apply`] has computed what the files say, [`guard`] puts back
//! the resources the reload would withdraw when
//!
//! - their file lies under a config root that has gone missing (or came back still empty),
//!   whatever their number; or
//! - more than [`WithdrawalPolicy::max_percent`] percent of the resources in force would go,
//!   and at least [`WithdrawalPolicy::min_resources`] of them (removing a handful of
//!   resources is an edit, not an accident).
//!
//! Those resources stay in force, marked `withheld`, and the store warns until the operator
//! confirms (SIGHUP to `entryway serve`, or `--confirm-withdrawal` at start) or the files
//! come back. The guard is a pure function of its inputs, table-tested below.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::store::{AcceptedConfig, StoreState};

/// When a withdrawal is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithdrawalPolicy {
    /// Hold a reload that would withdraw more than this percentage of the resources in
    /// force (100 turns the share rule off; a missing config root is held regardless).
    pub max_percent: u8,
    /// ... but only when at least this many resources would go.
    pub min_resources: usize,
}

impl Default for WithdrawalPolicy {
    /// More than half of the resources, and at least five of them.
    fn default() -> Self {
        WithdrawalPolicy {
            max_percent: 50,
            min_resources: 5,
        }
    }
}

/// A withdrawal held back, as `/debug/configz`, `/ready` and the log report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldWithdrawal {
    /// Why it is held.
    pub reason: String,
    /// Resources kept in force although their documents are gone.
    pub resources: usize,
    /// Resources in force before the reload.
    pub of: usize,
    /// The first few of them (`Kind namespace/name`).
    pub sample: Vec<String>,
}

/// How many held resources [`HeldWithdrawal::sample`] names.
const SAMPLE: usize = 10;

fn under(file: &str, root: &Path) -> bool {
    Path::new(file).starts_with(root)
}

/// Puts back into `next` the resources of `prev` it withdraws, when the policy says the
/// withdrawal is to be held (see the module docs); returns what was held. `missing_roots`
/// are the config roots that are gone (or came back empty after being gone).
pub fn guard(
    prev: &StoreState,
    next: &mut StoreState,
    missing_roots: &[PathBuf],
    policy: WithdrawalPolicy,
) -> Option<HeldWithdrawal> {
    let kept: std::collections::HashSet<_> = next.accepted.iter().map(|a| a.key()).collect();
    let withdrawn: Vec<&Arc<AcceptedConfig>> = prev
        .accepted
        .iter()
        .filter(|a| !kept.contains(&a.key()))
        .collect();
    if withdrawn.is_empty() {
        return None;
    }
    let of = prev.accepted.len();
    let share_exceeded = withdrawn.len() >= policy.min_resources.max(1)
        && withdrawn.len() * 100 > usize::from(policy.max_percent) * of;
    let (held, reason): (Vec<&Arc<AcceptedConfig>>, String) = if share_exceeded {
        (
            withdrawn.clone(),
            format!(
                "the reload would withdraw {} of {of} resources at once (more than {}%)",
                withdrawn.len(),
                policy.max_percent
            ),
        )
    } else {
        let roots: Vec<&PathBuf> = missing_roots
            .iter()
            .filter(|r| withdrawn.iter().any(|a| under(&a.file, r)))
            .collect();
        if roots.is_empty() {
            return None;
        }
        let held = withdrawn
            .iter()
            .copied()
            .filter(|a| roots.iter().any(|r| under(&a.file, r)))
            .collect();
        let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        (
            held,
            format!(
                "config root {} is missing or empty since it was removed",
                names.join(", ")
            ),
        )
    };
    let sample = held
        .iter()
        .take(SAMPLE)
        .map(|a| a.key().to_string())
        .collect();
    let count = held.len();
    for a in held {
        let mut carried = AcceptedConfig::clone(a);
        carried.withheld = true;
        next.accepted.push(Arc::new(carried));
    }
    Some(HeldWithdrawal {
        reason,
        resources: count,
        of,
        sample,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CheckedFile, DEFAULT_NAMESPACE, apply};
    use entryway_model::api::MeshConfig;

    fn se(name: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}.example.com]\n  ports:\n  - {{number: 80, name: http, protocol: HTTP}}\n  resolution: DNS\n"
        )
    }

    /// One file per resource: `<root>/<name>.yaml`.
    fn files(root: &str, names: &[&str]) -> Vec<CheckedFile> {
        names
            .iter()
            .map(|n| {
                CheckedFile::check(
                    &format!("{root}/{n}.yaml"),
                    &se(n),
                    DEFAULT_NAMESPACE,
                    &MeshConfig::default(),
                )
            })
            .collect()
    }

    fn names(s: &StoreState) -> Vec<String> {
        s.accepted
            .iter()
            .map(|a| format!("{}{}", a.name, if a.withheld { "*" } else { "" }))
            .collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            before: Vec<&'static str>,
            after: Vec<&'static str>,
            missing: Vec<&'static str>,
            accepted: Vec<&'static str>,
            held: Option<usize>,
        }
        let ten = vec!["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let cases = vec![
            Case {
                name: "removing a few resources is an edit",
                before: vec!["a", "b", "c"],
                after: vec!["c"],
                missing: vec![],
                accepted: vec!["c"],
                held: None,
            },
            Case {
                name: "removing half is allowed",
                before: ten.clone(),
                after: vec!["a", "b", "c", "d", "e"],
                missing: vec![],
                accepted: vec!["a", "b", "c", "d", "e"],
                held: None,
            },
            Case {
                name: "removing more than half of ten is held",
                before: ten.clone(),
                after: vec!["a", "b", "c", "d"],
                missing: vec![],
                accepted: vec!["a", "b", "c", "d", "e*", "f*", "g*", "h*", "i*", "j*"],
                held: Some(6),
            },
            Case {
                name: "a missing root holds its resources whatever their number",
                before: vec!["a"],
                after: vec![],
                missing: vec!["/cfg"],
                accepted: vec!["a*"],
                held: Some(1),
            },
            Case {
                name: "another root going missing does not hold this one's removals",
                before: vec!["a", "b"],
                after: vec!["a"],
                missing: vec!["/elsewhere"],
                accepted: vec!["a"],
                held: None,
            },
            Case {
                name: "additions still apply while a withdrawal is held",
                before: ten.clone(),
                after: vec!["a", "z"],
                missing: vec![],
                accepted: vec![
                    "a", "z", "b*", "c*", "d*", "e*", "f*", "g*", "h*", "i*", "j*",
                ],
                held: Some(9),
            },
        ];
        for case in cases {
            let prev = apply(&StoreState::default(), &files("/cfg", &case.before));
            let mut next = apply(&prev, &files("/cfg", &case.after));
            let missing: Vec<PathBuf> = case.missing.iter().map(PathBuf::from).collect();
            let held = guard(&prev, &mut next, &missing, WithdrawalPolicy::default());
            assert_eq!(names(&next), case.accepted, "{}", case.name);
            assert_eq!(
                held.as_ref().map(|h| h.resources),
                case.held,
                "{}",
                case.name
            );
            if let Some(h) = held {
                assert_eq!(h.of, case.before.len(), "{}", case.name);
                assert!(!h.reason.is_empty());
            }
        }
    }

    #[test]
    fn the_share_rule_can_be_turned_off() {
        let prev = apply(
            &StoreState::default(),
            &files("/cfg", &["a", "b", "c", "d", "e", "f"]),
        );
        let mut next = apply(&prev, &files("/cfg", &[]));
        let off = WithdrawalPolicy {
            max_percent: 100,
            ..WithdrawalPolicy::default()
        };
        assert_eq!(guard(&prev, &mut next, &[], off), None);
        assert!(next.accepted.is_empty());
    }
}

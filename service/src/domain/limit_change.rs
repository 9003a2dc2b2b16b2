//! Planning a change of a node's limits: what it asks of the parent
//! (reserve growth first, release shrinkage after), and what it must refuse
//! so that no usage is lost track of.
//!
//! ```text
//!   old node + new limits ──plan_limit_change──▶ LimitChange { grow, held, shrink }
//!                                           └──▶ WindowInUse / ResourceInUse
//! ```

use super::node::{Limit, Node};
use super::resource::{ResourceName, resource_name};
use super::window::Window;

/// Why a change of limits is refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitChangeError {
    #[error(
        "the window of {resource:?} cannot change from {from} to {to} while it is used this period or allocated to children (its usage belongs to the {from} period)"
    )]
    WindowInUse {
        resource: String,
        from: Window,
        to: Window,
    },
    #[error("resource {resource:?} cannot be removed: children reserve it or it has claims")]
    ResourceInUse { resource: String },
}

/// What a change of a node's limits asks of its parent (see
/// [`plan_limit_change`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitChange {
    /// Reserved from the parent first: growth of a limit, or a new one.
    pub grow: Vec<(String, Limit)>,
    /// What the node holds past its old `max` already, per resource: that
    /// part of a growth needs no new room in the parent.
    pub held: Vec<(ResourceName, u64)>,
    /// Released to the parent after the change: what a limit shrank by,
    /// or a removed limit's `max`.
    pub shrink: Vec<(String, u64)>,
}

/// Plans a change of `old`'s limits to `limits`, refusing what would lose
/// track of usage: a window cannot change while the resource has usage in
/// the node's subtree this period or children reserve it (that usage
/// belongs to the old window's period), and a limit cannot be removed
/// while children reserve it or the node holds claims of it (`claimed`).
pub fn plan_limit_change(
    old: &Node,
    limits: &[(String, Limit)],
    claimed: &[String],
    now: i64,
    auto_reset: bool,
) -> Result<LimitChange, LimitChangeError> {
    let held = |name: &str| old.share_of(name, now, auto_reset).map_or(0, |s| s.over);
    let window_in_use = |name: &str, from: Window, to: Window| LimitChangeError::WindowInUse {
        resource: name.to_owned(),
        from,
        to,
    };
    let mut plan = LimitChange::default();
    for (name, limit) in limits {
        match old.resources.iter().position(|r| *r.name == **name) {
            Some(i) => {
                let r = &old.resources[i];
                if r.window() != limit.window {
                    if r.allocated > 0 || old.subtree_used(i, now, auto_reset) > 0 {
                        return Err(window_in_use(name, r.window(), limit.window));
                    }
                    plan.shrink.push((name.clone(), r.max));
                    plan.grow.push((name.clone(), *limit));
                } else if limit.max > r.max {
                    plan.grow.push((
                        name.clone(),
                        Limit {
                            max: limit.max - r.max,
                            window: limit.window,
                        },
                    ));
                } else if limit.max < r.max {
                    plan.shrink.push((name.clone(), r.max - limit.max));
                }
            }
            None => {
                if let Some(g) = old.removed().iter().find(|g| *g.name == **name)
                    && g.window() != limit.window
                    && held(name) > 0
                {
                    return Err(window_in_use(name, g.window(), limit.window));
                }
                plan.grow.push((name.clone(), *limit));
            }
        }
        let h = held(name);
        if h > 0 {
            plan.held.push((resource_name(name), h));
        }
    }
    for r in &old.resources {
        if limits.iter().any(|(n, _)| *n == *r.name) {
            continue;
        }
        if r.allocated > 0 || claimed.iter().any(|c| *c == *r.name) {
            return Err(LimitChangeError::ResourceInUse {
                resource: r.name.to_string(),
            });
        }
        plan.shrink.push((r.name.to_string(), r.max));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{SECS_PER_DAY, days_from_civil};

    fn t0() -> i64 {
        days_from_civil(2026, 11, 22) * SECS_PER_DAY + 12 * 3600
    }

    fn limits(l: &[(&str, u64, Window)]) -> Vec<(String, Limit)> {
        l.iter()
            .map(|(n, max, window)| {
                (
                    n.to_string(),
                    Limit {
                        max: *max,
                        window: *window,
                    },
                )
            })
            .collect()
    }

    fn child(l: &[(&str, u64, Window)]) -> Node {
        Node::new(Some("org"), &limits(l), t0())
    }

    fn plan(old: &Node, new: &[(&str, u64, Window)]) -> Result<LimitChange, LimitChangeError> {
        plan_limit_change(old, &limits(new), &[], t0(), true)
    }

    #[test]
    fn growth_is_reserved_and_shrinkage_released() {
        let old = child(&[
            ("messages", 100, Window::Day),
            ("storage", 10, Window::None),
        ]);
        let p = plan(
            &old,
            &[("messages", 150, Window::Day), ("bytes", 5, Window::Day)],
        );
        assert_eq!(
            p,
            Ok(LimitChange {
                grow: limits(&[("messages", 50, Window::Day), ("bytes", 5, Window::Day)]),
                held: vec![],
                shrink: vec![("storage".into(), 10)],
            })
        );
        let p = plan(
            &old,
            &[("messages", 60, Window::Day), ("storage", 10, Window::None)],
        );
        assert_eq!(
            p.map(|p| (p.grow, p.shrink)),
            Ok((vec![], vec![("messages".into(), 40)]))
        );
        let same = plan(
            &old,
            &[
                ("messages", 100, Window::Day),
                ("storage", 10, Window::None),
            ],
        );
        assert_eq!(same, Ok(LimitChange::default()), "no change asks nothing");
    }

    #[test]
    fn an_unused_window_changes_as_a_release_and_a_new_reservation() {
        let old = child(&[("messages", 100, Window::Day)]);
        let p = plan(&old, &[("messages", 100, Window::Hour)]);
        assert_eq!(
            p.map(|p| (p.grow, p.shrink)),
            Ok((
                limits(&[("messages", 100, Window::Hour)]),
                vec![("messages".into(), 100)]
            ))
        );
    }

    #[test]
    fn a_window_in_use_cannot_change() {
        let mut used = child(&[("messages", 100, Window::Day)]);
        used.consume(&[("messages", 1)], t0(), true)
            .unwrap_or_else(|e| panic!("{e}"));
        let refused = LimitChangeError::WindowInUse {
            resource: "messages".into(),
            from: Window::Day,
            to: Window::Hour,
        };
        assert_eq!(
            plan(&used, &[("messages", 100, Window::Hour)]),
            Err(refused.clone())
        );
        // Children reserving it count as use too.
        let mut parent = child(&[("messages", 100, Window::Day)]);
        parent
            .reserve(&limits(&[("messages", 10, Window::Day)]), t0(), true)
            .unwrap_or_else(|e| panic!("{e}"));
        let message = refused.to_string();
        assert_eq!(
            plan(&parent, &[("messages", 100, Window::Hour)]),
            Err(refused)
        );
        assert!(message.contains("belongs to the day period"), "{message}");
    }

    #[test]
    fn a_limit_children_reserve_or_claims_hold_cannot_be_removed() {
        let mut parent = child(&[
            ("messages", 100, Window::Day),
            ("storage", 10, Window::None),
        ]);
        parent
            .reserve(&limits(&[("messages", 10, Window::Day)]), t0(), true)
            .unwrap_or_else(|e| panic!("{e}"));
        let in_use = |r: &str| Err(LimitChangeError::ResourceInUse { resource: r.into() });
        assert_eq!(
            plan(&parent, &[("storage", 10, Window::None)]),
            in_use("messages")
        );
        let claimed = ["storage".to_string()];
        let p = plan_limit_change(
            &parent,
            &limits(&[("messages", 100, Window::Day)]),
            &claimed,
            t0(),
            true,
        );
        assert_eq!(p, in_use("storage"));
        let p = plan_limit_change(
            &parent,
            &limits(&[("messages", 100, Window::Day)]),
            &[],
            t0(),
            true,
        );
        assert_eq!(p.map(|p| p.shrink), Ok(vec![("storage".into(), 10)]));
    }

    #[test]
    fn usage_past_the_old_max_is_held_already() {
        // A child counted past its max (increment always counts) holds the
        // difference of its parent: growing over it needs no new room there.
        let mut c = child(&[("messages", 10, Window::Day)]);
        c.increment(&[("messages", 15)], t0(), true)
            .unwrap_or_else(|e| panic!("{e}"));
        let p = plan(&c, &[("messages", 20, Window::Day)]);
        assert_eq!(
            p,
            Ok(LimitChange {
                grow: limits(&[("messages", 10, Window::Day)]),
                held: vec![(resource_name("messages"), 5)],
                shrink: vec![],
            })
        );
    }
}

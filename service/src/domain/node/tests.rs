//! The node's arithmetic, example by example.

use super::*;
use crate::domain::calendar::{SECS_PER_DAY, days_from_civil};

fn t0() -> i64 {
    days_from_civil(2026, 11, 22) * SECS_PER_DAY + 12 * 3600
}

fn lim(max: u64, window: Window) -> Limit {
    Limit { max, window }
}

fn node(limits: &[(&str, u64, Window)]) -> Node {
    let limits: Vec<_> = limits
        .iter()
        .map(|(n, m, w)| (n.to_string(), lim(*m, *w)))
        .collect();
    Node::new(None, &limits, t0())
}

fn used(n: &Node, r: &str) -> u64 {
    n.resource(r).map(|r| r.counter.used).unwrap_or(0)
}

#[test]
fn consume_is_all_or_nothing_and_stops_at_max() {
    let mut n = node(&[("messages", 10, Window::Day), ("requests", 5, Window::Hour)]);
    assert!(
        n.consume(&[("messages", 6), ("requests", 5)], t0(), true)
            .is_ok()
    );
    let err = n
        .consume(&[("messages", 1), ("requests", 1)], t0(), true)
        .unwrap_err();
    match err {
        Refusal::Exhausted {
            resource,
            requested,
            available,
            retry_after_secs,
        } => {
            assert_eq!(
                (resource.as_str(), requested, available),
                ("requests", 1, 0)
            );
            assert_eq!(retry_after_secs, Some(3600), "t0 is on the hour");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (used(&n, "messages"), used(&n, "requests")),
        (6, 5),
        "nothing counted"
    );
    assert!(n.consume(&[("messages", 4)], t0(), true).is_ok());
    assert!(n.consume(&[("messages", 1)], t0(), true).is_err());
    assert_eq!(used(&n, "messages"), 10, "exactly max");
}

/// Found by tests/hierarchy_props.rs (regression file): a consume of 0
/// moved `last_updated` in memory, which no flush records.
#[test]
fn usage_of_nothing_does_not_move_last_updated() {
    let mut n = node(&[("messages", 10, Window::Day)]);
    assert!(n.consume(&[("messages", 1)], t0(), true).is_ok());
    assert_eq!(n.last_updated, Some(t0()));
    assert!(n.consume(&[("messages", 0)], t0() + 5, true).is_ok());
    assert!(n.increment(&[("messages", 0)], t0() + 6, true).is_ok());
    assert_eq!(n.last_updated, Some(t0()));
    assert!(n.increment(&[("messages", 2)], t0() + 7, true).is_ok());
    assert_eq!(n.last_updated, Some(t0() + 7));
}

#[test]
fn consume_refuses_unknown_resources_and_capacities() {
    let mut n = node(&[("storage", 10, Window::None)]);
    assert!(matches!(
        n.consume(&[("gpu", 1)], t0(), true),
        Err(Refusal::UnknownResource { .. })
    ));
    assert!(matches!(
        n.consume(&[("storage", 1)], t0(), true),
        Err(Refusal::Capacity { .. })
    ));
    assert!(matches!(
        n.increment(&[("storage", 1)], t0(), true),
        Err(Refusal::Capacity { .. })
    ));
}

#[test]
fn increment_tracks_past_the_limit_but_never_overflows() {
    let mut n = node(&[("messages", 10, Window::Day)]);
    assert!(n.increment(&[("messages", 15)], t0(), true).is_ok());
    assert_eq!(used(&n, "messages"), 15);
    assert!(n.increment(&[("messages", MAX_COUNT)], t0(), true).is_err());
    assert_eq!(used(&n, "messages"), 15);
}

#[test]
fn children_are_reserved_from_the_parent() {
    let mut org = node(&[
        ("messages", 100, Window::Day),
        ("storage", 10, Window::None),
    ]);
    org.consume(&[("messages", 10)], t0(), true).unwrap();
    let team_a = vec![("messages".to_string(), lim(40, Window::Day))];
    org.reserve(&team_a, t0(), true).unwrap();
    let r = org.resource("messages").unwrap();
    assert_eq!((r.allocated, org.available(0, t0(), true)), (40, 50));
    // team-b wants 70 > 50: refused with what is missing, nothing reserved.
    let team_b = vec![
        ("messages".to_string(), lim(70, Window::Day)),
        ("storage".to_string(), lim(5, Window::None)),
    ];
    match org.reserve(&team_b, t0(), true) {
        Err(ReserveError::Short(s)) => {
            assert_eq!(
                s,
                vec![Shortage {
                    resource: "messages".into(),
                    requested: 70,
                    available: 50
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        org.resource("storage").unwrap().allocated,
        0,
        "all or nothing"
    );
    // The parent's own usage is capped at max - allocated.
    assert!(org.consume(&[("messages", 51)], t0(), true).is_err());
    assert!(org.consume(&[("messages", 50)], t0(), true).is_ok());
    // Freed reservations are available again.
    org.unreserve("messages", 40);
    assert_eq!(org.available(0, t0(), true), 40);
}

#[test]
fn reserve_checks_resource_and_window() {
    let mut org = node(&[("messages", 100, Window::Day)]);
    let wrong_window = vec![("messages".to_string(), lim(1, Window::Hour))];
    assert!(matches!(
        org.reserve(&wrong_window, t0(), true),
        Err(ReserveError::WindowMismatch { .. })
    ));
    let missing = vec![("gpu".to_string(), lim(1, Window::Day))];
    assert_eq!(
        org.reserve(&missing, t0(), true),
        Err(ReserveError::MissingResource("gpu".into()))
    );
}

#[test]
fn a_reservation_made_yesterday_is_unaffected_by_todays_reset() {
    let mut org = node(&[("messages", 100, Window::Day)]);
    org.reserve(
        &[("messages".to_string(), lim(60, Window::Day))],
        t0(),
        true,
    )
    .unwrap();
    org.consume(&[("messages", 40)], t0(), true).unwrap();
    let tomorrow = t0() + SECS_PER_DAY;
    assert_eq!(
        org.available(0, tomorrow, true),
        40,
        "usage reset, reservation did not"
    );
}

#[test]
fn charges_of_deleted_children_count_only_in_the_current_period() {
    let mut org = node(&[("messages", 100, Window::Day)]);
    let today = Window::Day.period_at(t0());
    org.charge("messages", today, 30, t0(), true);
    assert_eq!(used(&org, "messages"), 30);
    let yesterday = Window::Day.period_at(t0() - SECS_PER_DAY);
    org.charge("messages", yesterday, 50, t0(), true);
    assert_eq!(
        used(&org, "messages"),
        30,
        "a finished period charges nothing"
    );
}

#[test]
fn claims_and_releases_of_a_capacity() {
    let mut n = node(&[("storage", 10, Window::None), ("messages", 5, Window::Day)]);
    n.claim("storage", 7, t0()).unwrap();
    assert!(matches!(
        n.claim("storage", 4, t0()),
        Err(Refusal::Exhausted {
            available: 3,
            retry_after_secs: None,
            ..
        })
    ));
    assert!(matches!(
        n.claim("messages", 1, t0()),
        Err(Refusal::NotCapacity { .. })
    ));
    n.release("storage", 7, t0());
    n.claim("storage", 10, t0()).unwrap();
    // A capacity never resets.
    assert_eq!(n.available(1, t0() + 400 * SECS_PER_DAY, true), 0);
}

#[test]
fn shrinking_below_use_is_overcommitted() {
    let mut n = node(&[("messages", 100, Window::Day)]);
    n.reserve(
        &[("messages".to_string(), lim(60, Window::Day))],
        t0(),
        true,
    )
    .unwrap();
    n.consume(&[("messages", 30)], t0(), true).unwrap();
    assert!(!n.overcommitted(t0(), true));
    n.resources[0].max = 80;
    assert!(n.overcommitted(t0(), true));
    assert_eq!(n.available(0, t0(), true), 0);
}

#[test]
fn exceeded_rules() {
    assert!(exceeded(10, 0, 10, 10), "leaf at its limit");
    assert!(!exceeded(10, 0, 9, 9));
    assert!(exceeded(0, 0, 0, 0), "a zero limit is exhausted");
    assert!(
        !exceeded(100, 100, 0, 20),
        "all delegated, children not done"
    );
    assert!(exceeded(100, 100, 0, 100), "the whole subtree used it");
    assert!(exceeded(100, 60, 40, 45), "own share used up");
}

#[test]
fn details_are_boxed_only_while_something_is_set() {
    let mut n = Node::new::<&str>(None, &[], 0);
    assert!(n.details.is_none());
    n.add_child("b");
    n.set_name(Some("Team B".into()));
    assert_eq!((n.name(), n.children().len()), (Some("Team B"), 1));
    n.remove_child("b");
    assert!(n.details.is_some(), "the name is still set");
    n.set_name(None);
    assert!(n.details.is_none(), "nothing set: no allocation kept");
    assert_eq!(
        (n.name(), n.description(), n.children().len()),
        (None, None, 0)
    );
}

#[test]
fn children_list_stays_sorted_and_unique() {
    let mut n = node(&[]);
    for c in ["b", "a", "c", "a"] {
        n.add_child(c);
    }
    assert_eq!(
        n.children(),
        vec!["a".into(), "b".into(), "c".into()] as Vec<Box<str>>
    );
    n.remove_child("b");
    assert_eq!(n.children().len(), 2);
}

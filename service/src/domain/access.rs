//! Who may do what on a node: roles, grants, and the one decision every
//! call asks for.
//!
//! ```text
//!   org      grant: group:acme-admins admin
//!   ├── team-a   grant: system:serviceaccount:team-a:web reporter
//!   └── team-b
//!
//!   web on team-a: read, report            (its own grant)
//!   web on team-b: nothing                 (a grant reaches down, never sideways or up)
//!   acme-admins on team-a: change it, its children, their grants; not org itself
//! ```
//!
//! A role granted on a node holds on its whole subtree. Each role includes
//! the ones before it:
//!
//! | role | may |
//! |---|---|
//! | `reader` | read the node and its usage |
//! | `reporter` | + increment, consume, check, claims |
//! | `admin` | + create children and change them (limits, state, delete, grants), the audit trail |
//! | `owner` | + the node's own limits, state, delete and grants |
//!
//! So changing a node needs `owner` on it or above, or `admin` strictly
//! above it (it is a child of a node the caller administers). A grant names
//! a subject exactly as authentication reports it
//! (`system:serviceaccount:<ns>:<name>`) or a group (`group:<name>`):
//! names are compared whole, never by a part (a ServiceAccount `web` of
//! another namespace is another subject). Pure code: the caller hands in
//! the grants of the node and of its ancestors.

use std::fmt;

/// A role on a node, inherited by its subtree. Ordered: each includes the
/// ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Reader,
    Reporter,
    Admin,
    Owner,
}

/// What a call does to a node, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the node, its usage, its grants.
    Read,
    /// Increment, consume, check, claim or release.
    Report,
    /// Read the audit trail.
    Audit,
    /// Create a child below the node.
    CreateChild,
    /// Change the node itself: its limits, state, grants; delete it.
    Change,
}

/// Who a call comes from, as authentication established it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The user or ServiceAccount name (`system:serviceaccount:<ns>:<sa>`).
    pub subject: String,
    /// The groups authentication reported (without the `group:` prefix).
    pub groups: Vec<String>,
    /// Named in `AUTH_ADMINS`: owner of every node.
    pub admin: bool,
}

/// One grant: `subject` (a user, or `group:<name>`) has `role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<'a> {
    pub subject: &'a str,
    pub role: Role,
}

/// A role name the grant API does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role {0:?} is unknown; expected reader, reporter, admin or owner (or read)")]
pub struct UnknownRole(pub String);

// === impl Role ===

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Reporter => "reporter",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// A role by name. The older model's `read` ("view and use") is a
    /// reporter.
    pub fn parse(name: &str) -> Result<Role, UnknownRole> {
        match name {
            "reader" => Ok(Role::Reader),
            "reporter" | "read" => Ok(Role::Reporter),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Action ===

impl Action {
    /// The action in an error message: "may not {verb} quota node X".
    pub fn verb(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Report => "report usage on",
            Action::Audit => "read the audit trail of",
            Action::CreateChild => "create children of",
            Action::Change => "change",
        }
    }

    /// What the action needs, in an error message.
    pub fn needs(self) -> &'static str {
        match self {
            Action::Read => "reader",
            Action::Report => "reporter",
            Action::Audit | Action::CreateChild => "admin",
            Action::Change => "owner on it, or admin above it",
        }
    }
}

// === impl Identity ===

impl Identity {
    /// Whether a grant's subject names this identity: the whole name, or
    /// `group:` and one of its groups.
    pub fn is(&self, subject: &str) -> bool {
        match subject.strip_prefix("group:") {
            Some(group) => self.groups.iter().any(|g| g == group),
            None => self.subject == subject,
        }
    }

    /// The highest role the grants give this identity, if any.
    pub fn role_in<'a>(&self, grants: impl IntoIterator<Item = &'a Grant<'a>>) -> Option<Role> {
        grants
            .into_iter()
            .filter(|g| self.is(g.subject))
            .map(|g| g.role)
            .max()
    }
}

/// Whether `who` may do `action` on a node, given the grants along its
/// path: `path[0]` the root's, the last the node's own.
pub fn allows<'a>(who: &Identity, action: Action, path: &[&'a [Grant<'a>]]) -> bool {
    if who.admin {
        return true;
    }
    let roles: Vec<Option<Role>> = path.iter().map(|g| who.role_in(g.iter())).collect();
    allows_roles(action, &roles)
}

/// The same decision from the roles a (non-admin) identity holds on each
/// node of the path, root first (`None` where no grant names it): what the
/// counter store hands over, so that no grant is copied per call.
pub fn allows_roles(action: Action, roles: &[Option<Role>]) -> bool {
    let Some((own, above)) = roles.split_last() else {
        return false;
    };
    let best = |levels: &[Option<Role>]| levels.iter().copied().max().flatten();
    match action {
        Action::Read => best(roles) >= Some(Role::Reader),
        Action::Report => best(roles) >= Some(Role::Reporter),
        Action::Audit | Action::CreateChild => best(roles) >= Some(Role::Admin),
        Action::Change => best(above) >= Some(Role::Admin) || *own >= Some(Role::Owner),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sa(ns: &str, name: &str) -> Identity {
        Identity {
            subject: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                format!("system:serviceaccounts:{ns}"),
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
            admin: false,
        }
    }

    fn g(subject: &str, role: Role) -> Grant<'_> {
        Grant { subject, role }
    }

    #[test]
    fn roles_by_name_and_the_older_names() {
        for r in [Role::Reader, Role::Reporter, Role::Admin, Role::Owner] {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert_eq!(Role::parse("read"), Ok(Role::Reporter));
        assert_eq!(Role::parse("Admin"), Err(UnknownRole("Admin".into())));
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Reporter);
    }

    #[test]
    fn a_grant_reaches_down_never_sideways_or_up() {
        let web = sa("team-a", "web");
        let reporter = [g("system:serviceaccount:team-a:web", Role::Reporter)];
        let none: [Grant<'_>; 0] = [];
        // org -> team-a (granted) -> squad
        let team_a: [&[Grant<'_>]; 2] = [&none, &reporter];
        let squad: [&[Grant<'_>]; 3] = [&none, &reporter, &none];
        let team_b: [&[Grant<'_>]; 2] = [&none, &none];
        let org: [&[Grant<'_>]; 1] = [&none];
        for path in [&team_a[..], &squad[..]] {
            assert!(allows(&web, Action::Read, path));
            assert!(allows(&web, Action::Report, path));
            assert!(!allows(&web, Action::Audit, path));
            assert!(!allows(&web, Action::CreateChild, path));
            assert!(!allows(&web, Action::Change, path));
        }
        assert!(!allows(&web, Action::Read, &team_b));
        assert!(!allows(&web, Action::Read, &org));
    }

    #[test]
    fn an_admin_changes_what_is_below_not_the_node_itself() {
        let ops = sa("acme", "ops");
        let admin = [g("group:system:serviceaccounts:acme", Role::Admin)];
        let none: [Grant<'_>; 0] = [];
        let org: [&[Grant<'_>]; 1] = [&admin];
        let team: [&[Grant<'_>]; 2] = [&admin, &none];
        assert!(allows(&ops, Action::CreateChild, &org));
        assert!(allows(&ops, Action::Audit, &org));
        assert!(
            !allows(&ops, Action::Change, &org),
            "its own limits need owner"
        );
        assert!(allows(&ops, Action::Change, &team));
        let owner = [g("system:serviceaccount:acme:ops", Role::Owner)];
        let org: [&[Grant<'_>]; 1] = [&owner];
        assert!(allows(&ops, Action::Change, &org));
    }

    #[test]
    fn names_are_compared_whole() {
        let other_ns = sa("team-b", "web");
        let grant = [g("system:serviceaccount:team-a:web", Role::Owner)];
        let path: [&[Grant<'_>]; 1] = [&grant];
        assert!(!allows(&other_ns, Action::Read, &path));
        let by_group = [g("group:system:serviceaccounts:team-a", Role::Reader)];
        let path: [&[Grant<'_>]; 1] = [&by_group];
        assert!(!allows(&other_ns, Action::Read, &path));
        assert!(allows(&sa("team-a", "any"), Action::Read, &path));
        // A group grant never matches a user of that name, nor the reverse.
        let user_named_like_group = Identity {
            subject: "group:system:serviceaccounts:team-a".into(),
            ..Identity::default()
        };
        assert!(!allows(&user_named_like_group, Action::Read, &path));
    }

    #[test]
    fn auth_admins_may_do_anything_and_nobody_acts_on_no_node() {
        let root = Identity {
            subject: "root".into(),
            admin: true,
            ..Identity::default()
        };
        assert!(allows(&root, Action::Change, &[&[]]));
        assert!(!allows(&sa("a", "b"), Action::Read, &[]));
    }

    const ACTIONS: [Action; 5] = [
        Action::Read,
        Action::Report,
        Action::Audit,
        Action::CreateChild,
        Action::Change,
    ];

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Reader),
            Just(Role::Reporter),
            Just(Role::Admin),
            Just(Role::Owner)
        ]
    }

    /// Up to four levels, each with grants to one of three subjects
    /// (`u0`..`u2`) or one of two groups (`group:g0`, `group:g1`).
    fn grants() -> impl Strategy<Value = Vec<Vec<(usize, Role)>>> {
        prop::collection::vec(prop::collection::vec((0usize..5, role()), 0..3), 1..5)
    }

    const SUBJECTS: [&str; 5] = ["u0", "u1", "u2", "group:g0", "group:g1"];

    fn decide(who: &Identity, action: Action, levels: &[Vec<(usize, Role)>]) -> bool {
        let owned: Vec<Vec<Grant<'_>>> = levels
            .iter()
            .map(|l| l.iter().map(|&(s, role)| g(SUBJECTS[s], role)).collect())
            .collect();
        let path: Vec<&[Grant<'_>]> = owned.iter().map(Vec::as_slice).collect();
        allows(who, action, &path)
    }

    proptest! {
        /// More grants never take access away; a stronger action never
        /// passes where a weaker one on the same node fails; without a
        /// grant that names them (or `AUTH_ADMINS`) nobody may do anything.
        #[test]
        fn access_is_monotone(
            levels in grants(),
            extra in (0usize..4, 0usize..5, role()),
            user in 0usize..3,
            in_g0 in any::<bool>(),
        ) {
            let who = Identity {
                subject: format!("u{user}"),
                groups: if in_g0 { vec!["g0".into()] } else { vec![] },
                admin: false,
            };
            let mut more = levels.clone();
            let level = extra.0 % more.len();
            more[level].push((extra.1, extra.2));
            for action in ACTIONS {
                if decide(&who, action, &levels) {
                    prop_assert!(decide(&who, action, &more), "{action:?} lost by a grant");
                }
            }
            let order = [Action::Read, Action::Report, Action::Audit];
            for w in order.windows(2) {
                if decide(&who, w[1], &levels) {
                    prop_assert!(decide(&who, w[0], &levels));
                }
            }
            let named = levels.iter().flatten().any(|&(s, _)| {
                s == user || (s == 3 && in_g0)
            });
            if !named {
                for action in ACTIONS {
                    prop_assert!(!decide(&who, action, &levels));
                }
            }
        }
    }
}

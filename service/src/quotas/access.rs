//! The access check every call makes before it changes or reads anything.
//!
//! The decision is `domain::access`; this reads the grants along the
//! node's path from the counter store (in memory, a read lock per level).
//! A node that does not exist is forbidden to everyone but the admins of
//! every node, like one without a grant: a caller learns nothing about
//! nodes it may not see, not even whether they exist.

use super::*;
use crate::domain::access::{Action, Identity, allows_roles};

/// What the access check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    Denied,
    /// No such node, and the caller is not an admin of every node.
    NoSuchNode,
}

impl Quotas {
    /// Whether `who` may do `action` on node `id`, in one walk of its path.
    pub fn access(&self, who: &Identity, action: Action, id: &str) -> Access {
        if who.admin {
            return Access::Allowed;
        }
        match self.counters.roles_along(id, who) {
            None => Access::NoSuchNode,
            Some(roles) if allows_roles(action, &roles) => Access::Allowed,
            Some(_) => Access::Denied,
        }
    }

    /// Whether `who` may do `action` on node `id`.
    pub fn may(&self, who: &Identity, action: Action, id: &str) -> bool {
        self.access(who, action, id) == Access::Allowed
    }

    /// `Ok` when `who` may do `action` on node `id`, else
    /// [`QuotaError::Forbidden`] naming what was refused.
    pub fn authorize(&self, who: &Identity, action: Action, id: &str) -> Result<(), QuotaError> {
        match self.access(who, action, id) {
            Access::Allowed => Ok(()),
            Access::Denied | Access::NoSuchNode => Err(forbidden(who, action, id)),
        }
    }

    /// [`Quotas::access`], looked at again after catching up with a shared
    /// database when the node is unknown here (created through another
    /// replica moments ago; see [`Quotas::catch_up_on`]). A node that is
    /// known costs nothing more than the check itself.
    pub async fn access_caught_up(&self, who: &Identity, action: Action, id: &str) -> Access {
        match self.access(who, action, id) {
            Access::NoSuchNode => {
                self.catch_up_on(id).await;
                self.access(who, action, id)
            }
            found => found,
        }
    }

    /// [`Quotas::authorize`] after [`Quotas::access_caught_up`]. Admins of
    /// every node pass without a look at the node, so for them an unknown
    /// id is caught up with here: the call that follows must find it.
    pub async fn authorize_caught_up(
        &self,
        who: &Identity,
        action: Action,
        id: &str,
    ) -> Result<(), QuotaError> {
        if who.admin {
            self.catch_up_on(id).await;
        }
        match self.access_caught_up(who, action, id).await {
            Access::Allowed => Ok(()),
            Access::Denied | Access::NoSuchNode => Err(forbidden(who, action, id)),
        }
    }

    /// `Ok` only for the admins of every node (`AUTH_ADMINS`): creating a
    /// root, or a flat tenant by its first use.
    pub fn authorize_admin(&self, who: &Identity, what: &str) -> Result<(), QuotaError> {
        if who.admin {
            return Ok(());
        }
        Err(QuotaError::Forbidden(format!(
            "{:?} may not {what}: only the subjects in AUTH_ADMINS may",
            who.subject
        )))
    }
}

pub(super) fn forbidden(who: &Identity, action: Action, id: &str) -> QuotaError {
    QuotaError::Forbidden(format!(
        "{:?} may not {} quota node {id:?}: no grant on it or above gives {}",
        who.subject,
        action.verb(),
        action.needs()
    ))
}

//! What an object becomes in the quota service: the body its spec is
//! pushed as, and its grants made equal to `spec.access`.

use std::collections::{BTreeMap, BTreeSet};

use quota_api::v1::{GrantBody, LimitBody, PutBody};

use crate::crd::{AccessGrant, QuotaState, Role, Window};
use crate::error::{Error, Result};
use crate::quantity;

/// The service body for a spec: limits as whole numbers (zero for every
/// resource when `zero`), state, strictness, parent.
pub fn put_body(
    parent: Option<String>,
    limits: &BTreeMap<String, (String, Option<Window>)>,
    state: QuotaState,
    strict: bool,
    zero: bool,
) -> Result<PutBody> {
    let mut out = BTreeMap::new();
    for (name, (max, window)) in limits {
        let max = if zero {
            0
        } else {
            quantity::parse(max).map_err(|e| Error::Spec(format!("limits.{name}.max: {e}")))?
        };
        out.insert(
            name.clone(),
            LimitBody {
                max,
                window: window.map(|w| w.as_str().to_owned()),
            },
        );
    }
    Ok(PutBody {
        parent,
        limits: out.into(),
        state: Some(
            match state {
                QuotaState::Active => "active",
                QuotaState::Suspended => "suspended",
            }
            .to_owned(),
        ),
        strict: Some(strict),
        name: None,
        description: None,
    })
}

/// Makes the service's grants on `node_id` equal `spec.access`.
pub async fn sync_access(
    service: &quota_api::Client,
    node_id: &str,
    access: &[AccessGrant],
) -> Result<()> {
    let role = |r: Role| match r {
        Role::Reader => "reader",
        Role::Reporter => "reporter",
        Role::Admin => "admin",
        Role::Owner => "owner",
    };
    let want: BTreeSet<(String, String)> = access
        .iter()
        .map(|g| (g.subject.clone(), role(g.role).to_owned()))
        .collect();
    let have: BTreeSet<(String, String)> = service.grants(node_id).await?.into_iter().collect();
    for (subject, role) in want.difference(&have) {
        service
            .grant(
                node_id,
                &GrantBody {
                    subject: subject.clone(),
                    role: role.clone(),
                },
            )
            .await?;
    }
    for (subject, role) in have.difference(&want) {
        service
            .revoke(
                node_id,
                &GrantBody {
                    subject: subject.clone(),
                    role: role.clone(),
                },
            )
            .await?;
    }
    Ok(())
}

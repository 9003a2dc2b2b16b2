//! Grants, the audit trail and the snapshot the operator polls.

use super::*;
use crate::domain::access::Role;

/// The grant's role: the older model's `read` is a `reporter`.
fn role_of(body: &GrantBody) -> Result<Role, AppError> {
    Role::parse(&body.role).map_err(|e| AppError::new(ErrorCode::InvalidBody, e.to_string()))
}

/// A grant: a subject's role on a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantAnswer {
    /// False when the grant existed already.
    created: bool,
    #[schema(value_type = NodeId)]
    id: String,
    #[schema(value_type = quota_api::schema::Role)]
    role: &'static str,
    subject: String,
}

/// A revoked grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeAnswer {
    #[schema(value_type = NodeId)]
    id: String,
    /// Always true.
    revoked: bool,
    #[schema(value_type = quota_api::schema::Role)]
    role: &'static str,
    subject: String,
}

/// The grants on a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantsAnswer {
    #[schema(value_type = NodeId)]
    id: String,
    items: Vec<GrantItem>,
}

/// One grant on a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantItem {
    /// RFC 3339.
    created_at: String,
    #[schema(value_type = quota_api::schema::Role)]
    role: String,
    subject: String,
}

/// Grant a role
///
/// Gives `subject` a role on the node and everything below it (audited).
#[utoipa::path(
    post,
    path = "/api/v1/quotas/{id}/permissions/grant",
    operation_id = "grant",
    tag = "access",
    params(("id" = NodeId, Path, description = "The node.")),
    request_body = GrantBody,
    responses(
        (status = 200, description = "The grant existed already.", body = GrantAnswer),
        (status = 201, description = "Granted.", body = GrantAnswer),
        (status = 409, response = Conflict),
        CallErrors,
        BodyErrors,
        NodeErrors,
    ),
)]
pub async fn grant(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    let role = role_of(&body)?;
    caller.may(&q, Action::Change, &id).await?;
    let created = q.grant(caller.subject(), &id, &body.subject, role).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let out = GrantAnswer {
        created,
        id,
        role: role.as_str(),
        subject: body.subject,
    };
    Ok((status, Json(out)).into_response())
}

/// Revoke a role
#[utoipa::path(
    post,
    path = "/api/v1/quotas/{id}/permissions/revoke",
    operation_id = "revoke",
    tag = "access",
    params(("id" = NodeId, Path, description = "The node.")),
    request_body = GrantBody,
    responses(
        (status = 200, description = "Revoked.", body = RevokeAnswer),
        (status = 409, response = Conflict),
        CallErrors,
        BodyErrors,
        NodeErrors,
    ),
)]
pub async fn revoke(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Json<RevokeAnswer>, AppError> {
    check_id(&id)?;
    let role = role_of(&body)?;
    caller.may(&q, Action::Change, &id).await?;
    q.revoke(caller.subject(), &id, &body.subject, role).await?;
    Ok(Json(RevokeAnswer {
        id,
        revoked: true,
        role: role.as_str(),
        subject: body.subject,
    }))
}

/// List a node's grants
///
/// The grants on this node itself (roles inherited from above are not
/// listed).
#[utoipa::path(
    get,
    path = "/api/v1/quotas/{id}/permissions",
    operation_id = "listGrants",
    tag = "access",
    params(("id" = NodeId, Path, description = "The node.")),
    responses(
        (status = 200, description = "The node's grants.", body = GrantsAnswer),
        CallErrors,
        NodeErrors,
    ),
)]
pub async fn grants(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<GrantsAnswer>, AppError> {
    check_id(&id)?;
    caller.may(&q, Action::Read, &id).await?;
    if q.node(&id).is_some_and(|n| n.state == NodeState::Deleted) {
        return Err(gone(&id));
    }
    let rows = q.grants(&id).await?;
    let items = rows
        .into_iter()
        .map(|g| GrantItem {
            created_at: rfc3339(g.created_at),
            role: g.role,
            subject: g.subject,
        })
        .collect();
    Ok(Json(GrantsAnswer { id, items }))
}

/// Read the audit trail
///
/// Every change of the node, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/quotas/{id}/audit",
    operation_id = "audit",
    tag = "access",
    params(("id" = NodeId, Path, description = "The node."), AuditQuery),
    responses(
        (status = 200, description = "One page of audit records.", body = AuditPage),
        CallErrors,
        NodeErrors,
    ),
)]
pub async fn audit(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditBody>>, AppError> {
    check_id(&id)?;
    caller.may(&q, Action::Audit, &id).await?;
    let limit = page.limit.unwrap_or(50);
    if limit == 0 || limit as usize > MAX_PAGE {
        return Err(AppError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1-{MAX_PAGE}"),
        ));
    }
    let rows = q.audit_log(&id, limit + 1, page.after).await?;
    let more = rows.len() > limit as usize;
    let items: Vec<AuditBody> = rows
        .into_iter()
        .take(limit as usize)
        .map(AuditBody::from)
        .collect();
    let next_after = more
        .then(|| items.last().map(|a| serde_json::Value::from(a.id)))
        .flatten();
    Ok(Json(Page { items, next_after }))
}

/// The nodes changed since a version, of those the caller administers
/// (the operator is an admin of every node).
#[utoipa::path(
    get,
    path = "/api/v1/snapshot",
    operation_id = "snapshot",
    tag = "access",
    params(SnapshotQuery),
    responses(
        (status = 200, description = "The nodes changed since `since` that the caller administers.", body = SnapshotBody),
        (status = 400, response = BadRequest),
        CallErrors,
    ),
)]
pub async fn snapshot(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiQuery(s): ApiQuery<SnapshotQuery>,
) -> Result<Json<SnapshotBody>, AppError> {
    // Versions are database integers (BIGINT): none is larger.
    if s.since > quota_api::rules::MAX_AMOUNT {
        return Err(AppError::new(
            ErrorCode::InvalidQuery,
            format!("since is at most {}", quota_api::rules::MAX_AMOUNT),
        ));
    }
    let (version, nodes) = q.snapshot(s.since);
    Ok(Json(SnapshotBody {
        instance_id: q.instance_id().to_owned(),
        version,
        nodes: nodes
            .iter()
            .filter(|n| q.may(caller.identity(), Action::Audit, &n.id))
            .map(NodeBody::from)
            .collect(),
    }))
}

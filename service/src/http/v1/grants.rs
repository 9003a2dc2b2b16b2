//! Grants, the audit trail and the snapshot the operator polls.

use super::*;
use crate::domain::access::Role;

/// The grant's role: the older model's `read` is a `reporter`.
fn role_of(body: &GrantBody) -> Result<Role, AppError> {
    Role::parse(&body.role).map_err(|e| AppError::new(ErrorCode::InvalidBody, e.to_string()))
}

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
    let out = serde_json::json!({"id": id, "subject": body.subject, "role": role.as_str(), "created": created});
    Ok((status, Json(out)).into_response())
}

pub async fn revoke(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_id(&id)?;
    let role = role_of(&body)?;
    caller.may(&q, Action::Change, &id).await?;
    q.revoke(caller.subject(), &id, &body.subject, role).await?;
    Ok(Json(
        serde_json::json!({"id": id, "subject": body.subject, "role": role.as_str(), "revoked": true}),
    ))
}

pub async fn grants(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_id(&id)?;
    caller.may(&q, Action::Read, &id).await?;
    let rows = q.grants(&id).await?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|g| serde_json::json!({"subject": g.subject, "role": g.role, "created_at": rfc3339(g.created_at)}))
        .collect();
    Ok(Json(serde_json::json!({"id": id, "items": items})))
}

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
pub async fn snapshot(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiQuery(s): ApiQuery<SnapshotQuery>,
) -> Json<SnapshotBody> {
    let (version, nodes) = q.snapshot(s.since);
    Json(SnapshotBody {
        instance_id: q.instance_id().to_owned(),
        version,
        nodes: nodes
            .iter()
            .filter(|n| q.may(caller.identity(), Action::Audit, &n.id))
            .map(NodeBody::from)
            .collect(),
    })
}

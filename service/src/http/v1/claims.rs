//! Capacity claim handlers: claim (idempotent per `resource_id`), release.

use super::usage::{Refused, refusal_response};
use super::*;

/// Claim capacity
///
/// Holds `amount` of a capacity (a resource with window `none`) for
/// `resource_id` until it is released; claiming the same `resource_id` again
/// with the same amount is an idempotent repeat (200).
#[utoipa::path(
    post,
    path = "/api/v1/quotas/{id}/usage/allocate",
    operation_id = "claim",
    tag = "claims",
    params(("id" = NodeId, Path, description = "The node whose capacity is claimed.")),
    request_body = ClaimBody,
    responses(
        (status = 200, description = "The same claim existed already.", body = ClaimResponse),
        (status = 201, description = "Claimed.", body = ClaimResponse,
            links(("release" = (operation_id = "release", parameters(("id" = "$response.body#/id"), ("resource_id" = "$response.body#/resource_id")), description = "Release the claim.")))),
        (status = 403, description = "`forbidden` (no grant), or `node_suspended` (a refusal: the body is a `Refused`).", body = ErrorBody<'_>),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, description = "`node_deleted` (a refusal: the body is a `Refused`).", body = Refused<'_>),
        (status = 429, description = "Refused: the capacity is exhausted or overcommitted; nothing was claimed.", body = Refused<'_>),
        CallErrors,
        BodyErrors,
    ),
)]
pub async fn claim(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    validate_id(
        "resource_id",
        &body.resource_id,
        crate::domain::tenant_id::MAX_NODE_ID_LEN,
    )
    .map_err(|e| AppError::new(ErrorCode::InvalidBody, e.to_string()))?;
    validate_resource_name(&body.resource)
        .map_err(|e| AppError::new(ErrorCode::InvalidBody, e.to_string()))?;
    if body.amount > MAX_COUNT
        || body.reason.trim().is_empty()
        || body.reason.chars().count() > 1024
    {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            "amount must be at most 2^63-1 and reason 1-1024 characters",
        ));
    }
    let spec = ClaimSpec {
        resource: body.resource,
        resource_id: body.resource_id.clone(),
        amount: body.amount,
        reason: body.reason,
    };
    caller.may(&q, Action::Report, &id).await?;
    match q.claim(caller.subject(), &id, spec).await {
        Ok((c, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(claim_response(&id, &body.resource_id, c, created)),
            )
                .into_response())
        }
        Err(QuotaError::Refused(r)) => Ok(refusal_response(&id, r)),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn claim_response(
    id: &str,
    resource_id: &str,
    c: Claim,
    created: bool,
) -> ClaimResponse {
    ClaimResponse {
        id: id.to_owned(),
        resource_id: resource_id.to_owned(),
        resource: c.resource,
        amount: c.amount,
        reason: c.reason,
        created_at: rfc3339(c.created_at),
        created,
    }
}

/// Release a claim
#[utoipa::path(
    delete,
    path = "/api/v1/quotas/{id}/usage/{resource_id}",
    operation_id = "release",
    tag = "claims",
    params(
        ("id" = NodeId, Path, description = "The node."),
        ("resource_id" = NodeId, Path, description = "The claim's `resource_id`."),
    ),
    responses(
        (status = 200, description = "Released; the claim as it was.", body = ClaimResponse),
        (status = 409, response = Conflict),
        CallErrors,
        NodeErrors,
    ),
)]
pub async fn release(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath((id, resource_id)): ApiPath<(String, String)>,
) -> Result<Json<ClaimResponse>, AppError> {
    check_id(&id)?;
    caller.may(&q, Action::Report, &id).await?;
    let c = q.release(caller.subject(), &id, &resource_id).await?;
    Ok(Json(claim_response(&id, &resource_id, c, false)))
}

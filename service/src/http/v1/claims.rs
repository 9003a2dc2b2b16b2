//! Capacity claim handlers: claim (idempotent per `resource_id`), release.

use super::usage::refusal_response;
use super::*;

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

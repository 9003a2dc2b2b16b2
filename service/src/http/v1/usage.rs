//! Usage handlers: consume (check-and-increment) and the batch, with their
//! answers written without serde on these hot routes (see `json_writer`).

use super::*;

/// The amounts as pairs (inline for up to 4 resources: no allocation per
/// call or batch item).
pub(super) fn usage_pairs(
    usage: &BTreeMap<String, u64>,
) -> Result<SmallVec<[(&str, u64); 4]>, AppError> {
    if usage.is_empty() {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            "usage must name at least one resource",
        ));
    }
    usage
        .iter()
        .map(|(r, &n)| {
            validate_resource_name(r)
                .map_err(|e| AppError::new(ErrorCode::InvalidBody, format!("usage: {e}")))?;
            if n > MAX_COUNT {
                Err(AppError::new(
                    ErrorCode::InvalidBody,
                    format!("usage.{r} is {n}; the maximum is {MAX_COUNT}"),
                ))
            } else {
                Ok((r.as_str(), n))
            }
        })
        .collect()
}

/// Consume usage
///
/// Atomic check-and-increment on the node and every ancestor: counted only
/// when every amount fits everywhere; otherwise nothing is counted and the
/// answer says which resource refused and when to retry.
#[utoipa::path(
    post,
    path = "/api/v1/quotas/{id}/consume",
    operation_id = "consume",
    tag = "usage",
    params(("id" = NodeId, Path, description = "The node to count on.")),
    request_body = UsageBody,
    responses(
        (status = 200, description = "Counted.", body = Consumed,
            headers(
                ("RateLimit-Policy" = String, description = "With `RATELIMIT_FIELDS=true`: IETF RateLimit-Policy, one policy per resource counted, named by it: `\"messages\";q=<the node's max>;w=<the window's seconds>` (no `w` for a window that never resets)."),
                ("RateLimit" = String, description = "With `RATELIMIT_FIELDS=true`: IETF RateLimit: `\"messages\";r=<what the node may still use>;t=<seconds to the reset>`, one item per resource, in the resource's units."),
            )),
        (status = 403, description = "`forbidden` (no grant), or `node_suspended` (a refusal: the body is a `Refused`).", body = ErrorBody<'_>),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, description = "`node_deleted` (a refusal: the body is a `Refused`).", body = Refused<'_>),
        (status = 429, description = "Refused: `quota_exhausted` or `overcommitted`; nothing was counted. `retry_after_secs` (and `Retry-After`) says when the window resets, null for a capacity.", body = Refused<'_>,
            headers(
                ("Retry-After" = u64, description = "Seconds until the refusing window resets; absent for a capacity."),
                ("RateLimit" = String, description = "IETF RateLimit for the refusing resource: `\"<resource>\";r=<what is left>;t=<seconds to the reset>`."),
            )),
        CallErrors,
        BodyErrors,
    ),
)]
pub async fn consume(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UsageBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    let usage = usage_pairs(&body.usage)?;
    caller.may(&q, Action::Report, &id).await?;
    // The fields are written before the answer takes the usage it borrows.
    let outcome = q
        .consume(&id, &usage)
        .await
        .map(|headroom| ratelimit::Fields::of(&headroom));
    drop(usage);
    match outcome {
        Ok(fields) => {
            let mut resp = JsonAnswer(Consumed {
                allowed: true,
                id,
                usage: body.usage.0,
            })
            .into_response();
            fields.insert_into(resp.headers_mut());
            Ok(resp)
        }
        Err(QuotaError::Refused(r)) => Ok(refusal_response(&id, r)),
        Err(e) => Err(e.into()),
    }
}

/// A counted consume: `{"allowed":true,"id":..,"usage":{..}}`, written
/// without serde on this hot route (see `json_writer`).
/// Refusals answer through [`refusal_response`].
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Consumed {
    /// Always true here.
    allowed: bool,
    #[schema(value_type = NodeId)]
    id: String,
    /// What was counted, by resource.
    #[schema(value_type = Usage)]
    usage: BTreeMap<String, u64>,
}

impl WriteJson for Consumed {
    fn size_hint(&self) -> usize {
        128
    }

    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object();
        w.bool_field(key!("allowed"), self.allowed);
        w.str_field(key!("id"), &self.id);
        w.begin_object_field(key!("usage"));
        for (resource, n) in &self.usage {
            w.u64_entry(resource, *n);
        }
        w.end_object();
        w.end_object();
    }
}

/// A refused consume or claim: what refused, and the error envelope every
/// error has. Fields in alphabetical order, the order the answer has always
/// had.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Refused<'a> {
    /// Always false here.
    allowed: bool,
    /// What the refusing resource had left; null unless exhausted.
    #[schema(required = true)]
    available: Option<u64>,
    error: ErrorDetail<'a>,
    #[schema(value_type = NodeId)]
    id: &'a str,
    /// The same as `error.code`.
    #[schema(value_type = ErrorCode)]
    reason: &'a str,
    /// What was asked of the refusing resource; null unless exhausted.
    #[schema(required = true)]
    requested: Option<u64>,
    /// The refusing resource; null when the node refused (suspended,
    /// deleted).
    #[schema(value_type = Option<ResourceName>, required = true)]
    resource: Option<String>,
    /// Seconds until the refusing window resets; null when waiting will
    /// not help (a capacity, a suspended node).
    #[schema(required = true)]
    retry_after_secs: Option<u64>,
}

/// A refused consume: `allowed: false` with the reason, plus the error
/// envelope every error has; 429 with `Retry-After` when a window reset will
/// help, 403 when a node is suspended.
pub(super) fn refusal_response(id: &str, r: Refusal) -> Response {
    let err = AppError::from(r.clone());
    let (resource, requested, available, retry) = match &r {
        Refusal::Exhausted {
            resource,
            requested,
            available,
            retry_after_secs,
        } => (
            Some(resource.clone()),
            Some(*requested),
            Some(*available),
            *retry_after_secs,
        ),
        Refusal::Overcommitted {
            resource,
            retry_after_secs,
            ..
        } => (Some(resource.clone()), None, None, *retry_after_secs),
        Refusal::UnknownResource { resource }
        | Refusal::Capacity { resource }
        | Refusal::NotCapacity { resource }
        | Refusal::Overflow { resource } => (Some(resource.clone()), None, None, None),
        Refusal::Suspended { .. } | Refusal::Deleted { .. } => (None, None, None, None),
    };
    let body = Refused {
        allowed: false,
        available,
        error: err.detail(),
        id,
        reason: err.code,
        requested,
        resource,
        retry_after_secs: retry,
    };
    let mut resp = (err.status, Json(body)).into_response();
    if let Some(secs) = retry
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    let left = match &r {
        Refusal::Exhausted {
            resource,
            available,
            ..
        } => Some((resource, *available)),
        Refusal::Overcommitted { resource, .. } => Some((resource, 0)),
        _ => None,
    };
    if let Some((resource, remaining)) = left {
        ratelimit::insert_refused(resp.headers_mut(), resource, remaining, retry);
    }
    resp
}

/// Count usage in a batch
///
/// Up to 10,000 increments (`mode: increment`, always counted) or consumes
/// (`mode: consume`, each checked like a single consume), answered in order
/// with one status per item.
#[utoipa::path(
    post,
    path = "/api/v1/usage/batch",
    operation_id = "batch",
    tag = "usage",
    request_body = BatchBody,
    responses(
        (status = 200, description = "Every item's outcome, in order; `counted` items were counted.", body = BatchAnswer<'_>),
        CallErrors,
        BodyErrors,
    ),
)]
pub async fn batch(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiJson(body): ApiJson<BatchBody, MAX_BATCH_BODY_BYTES>,
) -> Result<Response, AppError> {
    if body.items.is_empty() || body.items.len() > MAX_BATCH_ITEMS {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            format!("items must hold 1-{MAX_BATCH_ITEMS} entries"),
        ));
    }
    let mut counted = 0usize;
    let mut results: Vec<BatchResult<'_>> = Vec::with_capacity(body.items.len());
    for item in &body.items {
        let checked = match check_id(&item.id).and_then(|()| usage_pairs(&item.usage)) {
            Ok(usage) => caller
                .may(&q, Action::Report, &item.id)
                .await
                .map(|()| usage),
            Err(e) => Err(e),
        };
        let outcome = match checked {
            Err(e) => Err((e, None)),
            Ok(usage) => {
                let r = match body.mode {
                    BatchMode::Increment => q.increment_node(&item.id, &usage).await,
                    // A batch answers no RateLimit fields (one answer,
                    // many nodes).
                    BatchMode::Consume => q.consume(&item.id, &usage).await.map(drop),
                };
                r.map_err(|e| {
                    let retry = match &e {
                        QuotaError::Refused(
                            Refusal::Exhausted {
                                retry_after_secs, ..
                            }
                            | Refusal::Overcommitted {
                                retry_after_secs, ..
                            },
                        ) => *retry_after_secs,
                        _ => None,
                    };
                    (AppError::from(e), retry)
                })
            }
        };
        results.push(match outcome {
            Ok(()) => {
                counted += 1;
                BatchResult {
                    id: &item.id,
                    status: 200,
                    allowed: true,
                    error: None,
                }
            }
            Err((e, retry_after_secs)) => BatchResult {
                id: &item.id,
                status: e.status.as_u16(),
                allowed: false,
                error: Some(BatchError {
                    code: e.code,
                    message: e.message,
                    retry_after_secs,
                }),
            },
        });
    }
    Ok(JsonAnswer(BatchAnswer { counted, results }).into_response())
}

/// One item's outcome in a batch answer. Fields in alphabetical order: the
/// order the answer has always had (it was built as a JSON map).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult<'a> {
    /// The item was counted.
    pub allowed: bool,
    /// Why not; absent when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<BatchError>,
    #[schema(value_type = String)]
    pub id: &'a str,
    /// The status a single call would have answered.
    pub status: u16,
}

/// Why a batch item was not counted.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchError {
    #[schema(value_type = ErrorCode)]
    pub code: &'static str,
    pub message: String,
    /// As a single consume's: seconds until the refusing window resets.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after_secs: Option<u64>,
}

/// Answer of `POST /api/v1/usage/batch`, written without serde on this hot
/// route (see `json_writer`).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer<'a> {
    /// Items counted.
    pub counted: usize,
    /// One per item, in order.
    pub results: Vec<BatchResult<'a>>,
}

impl WriteJson for BatchAnswer<'_> {
    fn size_hint(&self) -> usize {
        32 + self.results.len() * 64
    }

    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object();
        w.u64_field(key!("counted"), self.counted as u64);
        w.begin_array_field(key!("results"));
        for r in &self.results {
            w.begin_object();
            w.bool_field(key!("allowed"), r.allowed);
            if let Some(e) = &r.error {
                w.begin_object_field(key!("error"));
                w.str_field(key!("code"), e.code);
                w.str_field(key!("message"), &e.message);
                if let Some(secs) = e.retry_after_secs {
                    w.u64_field(key!("retry_after_secs"), secs);
                }
                w.end_object();
            }
            w.str_field(key!("id"), r.id);
            w.u64_field(key!("status"), u64::from(r.status));
            w.end_object();
        }
        w.end_array();
        w.end_object();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_is_written_as_serde_json_writes_it() {
        let answer = BatchAnswer {
            counted: 1,
            results: vec![
                BatchResult {
                    allowed: true,
                    error: None,
                    id: "team-a",
                    status: 200,
                },
                BatchResult {
                    allowed: false,
                    error: Some(BatchError {
                        code: "quota_exceeded",
                        message: "messages: \"quoted\"\n".into(),
                        retry_after_secs: Some(60),
                    }),
                    id: "team-b",
                    status: 429,
                },
                BatchResult {
                    allowed: false,
                    error: Some(BatchError {
                        code: "node_not_found",
                        message: "no node".into(),
                        retry_after_secs: None,
                    }),
                    id: "nobody",
                    status: 404,
                },
            ],
        };
        let mut w = JsonWriter::default();
        answer.write_json(&mut w);
        assert_eq!(
            String::from_utf8_lossy(&w.into_bytes()),
            serde_json::to_string(&answer).unwrap_or_default()
        );
    }

    #[test]
    fn a_counted_consume_is_written_as_serde_json_writes_it() {
        let usage = BTreeMap::from([("bytes".to_string(), 512), ("messages".to_string(), 1)]);
        let mut w = JsonWriter::default();
        Consumed {
            allowed: true,
            id: "team-a".into(),
            usage: usage.clone(),
        }
        .write_json(&mut w);
        let expected = serde_json::json!({"allowed": true, "id": "team-a", "usage": usage});
        assert_eq!(
            String::from_utf8_lossy(&w.into_bytes()),
            serde_json::to_string(&expected).unwrap_or_default()
        );
    }
}

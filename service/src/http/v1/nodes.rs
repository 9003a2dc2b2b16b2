//! Node handlers: create or update (`PUT`), read, list, delete, allocate a
//! child, set the state.

use super::*;

pub(super) fn node_spec(
    parent: Option<String>,
    limits: BTreeMap<String, LimitBody>,
    state: Option<String>,
    strict: Option<bool>,
    name: Option<String>,
    description: Option<String>,
) -> Result<NodeSpec, AppError> {
    let invalid = |m: String| AppError::new(ErrorCode::InvalidBody, m);
    if let Some(p) = &parent {
        validate_id("parent", p, crate::domain::tenant_id::MAX_NODE_ID_LEN)
            .map_err(|e| invalid(e.to_string()))?;
    }
    let state = match state.as_deref() {
        None => None,
        Some("active") => Some(NodeState::Active),
        Some("suspended") => Some(NodeState::Suspended),
        Some(other) => {
            return Err(invalid(format!(
                "state {other:?} is not active or suspended"
            )));
        }
    };
    for (field, v) in [("name", &name), ("description", &description)] {
        if v.as_ref().is_some_and(|s| s.chars().count() > 1024) {
            return Err(invalid(format!("{field} is longer than 1024 characters")));
        }
    }
    let mut out = BTreeMap::new();
    for (resource, l) in limits {
        let window = match l.window.as_deref() {
            None => None,
            Some(w) => Some(
                w.parse::<Window>()
                    .map_err(|e| invalid(format!("limits.{resource}.window: {e}")))?,
            ),
        };
        if l.max > MAX_COUNT {
            return Err(invalid(format!(
                "limits.{resource}.max is {}; the maximum is {MAX_COUNT}",
                l.max
            )));
        }
        out.insert(resource, LimitSpec { max: l.max, window });
    }
    Ok(NodeSpec {
        parent,
        limits: out,
        state,
        strict,
        name,
        description,
        admins: Vec::new(),
    })
}

/// Create or update a node
///
/// Idempotent: the body is the node's whole desired state. A new node under
/// a parent must fit in what the parent has left (409 `does_not_fit` names
/// what is missing); a lowered limit never removes what is in use (the node
/// is then `overcommitted`).
#[utoipa::path(
    put,
    path = "/api/v1/quotas/{id}",
    operation_id = "putNode",
    tag = "nodes",
    params(("id" = NodeId, Path, description = "The node.")),
    request_body = PutBody,
    responses(
        (status = 200, description = "Updated.", body = NodeBody, links(
            ("getNode" = (operation_id = "getNode", parameters(("id" = "$response.body#/id")), description = "Read the node.")),
            ("consume" = (operation_id = "consume", parameters(("id" = "$response.body#/id")), description = "Count usage on the node.")),
            ("allocate" = (operation_id = "allocate", parameters(("id" = "$response.body#/id")), description = "Create a child of the node.")),
            ("claim" = (operation_id = "claim", parameters(("id" = "$response.body#/id")), description = "Claim capacity of the node.")),
            ("setState" = (operation_id = "setState", parameters(("id" = "$response.body#/id")), description = "Suspend or resume the node.")),
            ("deleteNode" = (operation_id = "deleteNode", parameters(("id" = "$response.body#/id")), description = "Delete the node.")),
        )),
        (status = 201, description = "Created.", body = NodeBody, links(
            ("getNode" = (operation_id = "getNode", parameters(("id" = "$response.body#/id")), description = "Read the node.")),
            ("consume" = (operation_id = "consume", parameters(("id" = "$response.body#/id")), description = "Count usage on the node.")),
            ("allocate" = (operation_id = "allocate", parameters(("id" = "$response.body#/id")), description = "Create a child of the node.")),
            ("claim" = (operation_id = "claim", parameters(("id" = "$response.body#/id")), description = "Claim capacity of the node.")),
            ("setState" = (operation_id = "setState", parameters(("id" = "$response.body#/id")), description = "Suspend or resume the node.")),
            ("deleteNode" = (operation_id = "deleteNode", parameters(("id" = "$response.body#/id")), description = "Delete the node.")),
        )),
        (status = 409, response = Conflict),
        CallErrors,
        BodyErrors,
        NodeErrors,
    ),
)]
pub async fn put(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutBody>,
) -> Result<Response, AppError> {
    check_id(&id)?;
    let spec = node_spec(
        body.parent,
        body.limits.0,
        body.state,
        body.strict,
        body.name,
        body.description,
    )?;
    // Created through another replica moments ago: an update, not a create.
    q.catch_up_on(&id).await;
    match (q.contains(&id), spec.parent.as_deref()) {
        (true, _) => caller.may(&q, Action::Change, &id).await?,
        (false, Some(parent)) => caller.may(&q, Action::CreateChild, parent).await?,
        (false, None) => caller.must_be_admin(&q, &format!("create the root node {id:?}"))?,
    }
    let (view, created) = q.put(caller.subject(), &id, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(NodeBody::from(&view))).into_response())
}

/// Get a node
///
/// Its resources with usage, what is allocated to children and what is
/// available, its children and its state.
#[utoipa::path(
    get,
    path = "/api/v1/quotas/{id}",
    operation_id = "getNode",
    tag = "nodes",
    params(("id" = NodeId, Path, description = "The node.")),
    responses(
        (status = 200, description = "The node.", body = NodeBody),
        CallErrors,
        NodeErrors,
    ),
)]
pub async fn get(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeBody>, AppError> {
    check_id(&id)?;
    caller.may(&q, Action::Read, &id).await?;
    let view = q.node(&id).ok_or(QuotaError::NotFound(id))?;
    if view.state == NodeState::Deleted {
        return Err(gone(&view.id));
    }
    Ok(Json(NodeBody::from(&view)))
}

/// List nodes
///
/// The nodes the caller may read, sorted by id, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/quotas",
    operation_id = "listNodes",
    tag = "nodes",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of nodes.", body = NodePage),
        (status = 400, response = BadRequest),
        CallErrors,
    ),
)]
pub async fn list(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<NodeBody>>, AppError> {
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1-{MAX_PAGE}"),
        ));
    }
    let (items, next) = q.list_nodes(limit, page.after.as_deref(), |id| {
        q.may(caller.identity(), Action::Read, id)
    });
    Ok(Json(Page {
        items: items.iter().map(NodeBody::from).collect(),
        next_after: next.map(serde_json::Value::String),
    }))
}

/// Delete a node
///
/// A soft delete: the node stops counting and its limits are given back to
/// the parent; refused (409 `has_children`) while it has children.
#[utoipa::path(
    delete,
    path = "/api/v1/quotas/{id}",
    operation_id = "deleteNode",
    tag = "nodes",
    params(("id" = NodeId, Path, description = "The node.")),
    responses(
        (status = 200, description = "Deleted; the node as it was.", body = NodeBody),
        (status = 409, response = Conflict),
        CallErrors,
        NodeErrors,
    ),
)]
pub async fn delete(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeBody>, AppError> {
    check_id(&id)?;
    caller.may(&q, Action::Change, &id).await?;
    let view = q.delete(caller.subject(), &id).await?;
    Ok(Json(NodeBody::from(&view)))
}

/// Allocate a child
///
/// Creates a child node whose limits are carved from this node's: refused
/// (409 `does_not_fit`, with what is missing) when they do not fit.
#[utoipa::path(
    post,
    path = "/api/v1/quotas/{id}/allocate",
    operation_id = "allocate",
    tag = "nodes",
    params(("id" = NodeId, Path, description = "The parent.")),
    request_body = AllocateBody,
    responses(
        (status = 201, description = "The new child.", body = NodeBody, links(
            ("getNode" = (operation_id = "getNode", parameters(("id" = "$response.body#/id")), description = "Read the node.")),
            ("consume" = (operation_id = "consume", parameters(("id" = "$response.body#/id")), description = "Count usage on the node.")),
            ("allocate" = (operation_id = "allocate", parameters(("id" = "$response.body#/id")), description = "Create a child of the node.")),
            ("claim" = (operation_id = "claim", parameters(("id" = "$response.body#/id")), description = "Claim capacity of the node.")),
            ("setState" = (operation_id = "setState", parameters(("id" = "$response.body#/id")), description = "Suspend or resume the node.")),
            ("deleteNode" = (operation_id = "deleteNode", parameters(("id" = "$response.body#/id")), description = "Delete the node.")),
        )),
        (status = 409, response = Conflict),
        CallErrors,
        BodyErrors,
        NodeErrors,
    ),
)]
pub async fn allocate(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(parent): ApiPath<String>,
    ApiJson(body): ApiJson<AllocateBody>,
) -> Result<Response, AppError> {
    check_id(&parent)?;
    check_id(&body.id)?;
    let mut spec = node_spec(None, body.limits.0, None, None, body.name, body.description)?;
    spec.admins = body.admin_user_ids;
    caller.may(&q, Action::CreateChild, &parent).await?;
    let view = q
        .allocate(caller.subject(), &parent, &body.id, spec)
        .await?;
    Ok((StatusCode::CREATED, Json(NodeBody::from(&view))).into_response())
}

/// Suspend or resume a node
///
/// A suspended node refuses every consume and claim (403 `node_suspended`),
/// and so does everything below it.
#[utoipa::path(
    post,
    path = "/api/v1/quotas/{id}/state",
    operation_id = "setState",
    tag = "nodes",
    params(("id" = NodeId, Path, description = "The node.")),
    request_body = StateBody,
    responses(
        (status = 200, description = "The node in its new state.", body = NodeBody),
        (status = 409, response = Conflict),
        CallErrors,
        BodyErrors,
        NodeErrors,
    ),
)]
pub async fn set_state(
    caller: Caller,
    State(q): State<Arc<Quotas>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StateBody>,
) -> Result<Json<NodeBody>, AppError> {
    check_id(&id)?;
    let state = match body.state.as_str() {
        "active" => NodeState::Active,
        "suspended" => NodeState::Suspended,
        other => {
            return Err(AppError::new(
                ErrorCode::InvalidBody,
                format!("state {other:?} is not active or suspended"),
            ));
        }
    };
    caller.may(&q, Action::Change, &id).await?;
    let view = q.set_state(caller.subject(), &id, state).await?;
    Ok(Json(NodeBody::from(&view)))
}

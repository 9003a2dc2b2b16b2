//! Named schemas of the OpenAPI document for what the Rust types leave
//! loose: ids and resource names are `String`s and amounts `u64`s here, but
//! on the wire they follow [`crate::rules`]. Fields point at these with
//! `#[schema(value_type = ...)]`, so the document names each rule once
//! (`#/components/schemas/NodeId`) and generated clients get a type for it.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::rules;

/// Defines a marker type whose schema is `$body`, named after the type.
/// `uses` lists the named schemas `$body` refers to (`$ref`), so the
/// document holds them too.
macro_rules! named_schema {
    ($(#[$doc:meta])* $name:ident => $body:expr) => {
        named_schema!($(#[$doc])* $name uses [] => $body);
    };
    ($(#[$doc:meta])* $name:ident uses [$($dep:ty),*] => $body:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let schema: ObjectBuilder = $body;
                RefOr::T(Schema::Object(schema.build()))
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn schemas(_schemas: &mut Vec<(String, RefOr<Schema>)>) {
                $(
                    _schemas.push((<$dep>::name().into_owned(), <$dep>::schema()));
                    <$dep>::schemas(_schemas);
                )*
            }
        }
    };
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn one_of(description: &str, values: &[&str]) -> ObjectBuilder {
    string(description).enum_values(Some(values.iter().copied()))
}

named_schema! {
    /// A node id of the v1 API.
    NodeId => string("A node id: 1 to 253 characters of letters, digits and . _ : - (not `.` or `..`).")
        .pattern(Some(rules::NODE_ID_PATTERN))
        .min_length(Some(1))
        .max_length(Some(rules::MAX_NODE_ID_LEN))
        .examples(["team-a"])
}

named_schema! {
    /// A tenant id of the flat API.
    TenantId => string("A tenant id: 1 to 128 characters of letters, digits and . _ : - (not `.` or `..`).")
        .pattern(Some(rules::TENANT_ID_PATTERN))
        .min_length(Some(1))
        .max_length(Some(rules::MAX_TENANT_ID_LEN))
        .examples(["tenant-1"])
}

named_schema! {
    /// A resource name.
    ResourceName => string("A resource name: 1 to 63 characters of a-z 0-9 . _ -, starting and ending with a letter or digit; `messages` (per day) and `bandwidth` (bytes per month) are built in.")
        .pattern(Some(rules::RESOURCE_NAME_PATTERN))
        .min_length(Some(1))
        .max_length(Some(63))
        .examples(["messages"])
}

named_schema! {
    /// An amount, a limit or a counter value.
    Amount => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("A whole amount from 0 to 2^63 - 1."))
        .minimum(Some(0))
        .maximum(Some(rules::MAX_AMOUNT))
}

named_schema! {
    /// A name, description or reason.
    Text => string("Free text of at most 1024 characters.")
        .max_length(Some(rules::MAX_TEXT_CHARS))
}

named_schema! {
    /// A claim's reason.
    Reason => string("Why (audited): 1 to 1024 characters, not only white space.")
        .pattern(Some(rules::REASON_PATTERN))
        .min_length(Some(1))
        .max_length(Some(rules::MAX_TEXT_CHARS))
}

named_schema! {
    /// A limit's window.
    WindowName => one_of(
        "The window a limit counts in: a calendar minute, hour, day or month, or `none` for a capacity (claimed and released, never reset).",
        &rules::WINDOWS,
    )
}

named_schema! {
    /// A node's state.
    NodeState => one_of(
        "`active` counts; `suspended` refuses every consume and claim; `deleted` (by DELETE) is gone and answers 410.",
        &rules::NODE_STATES,
    )
}

named_schema! {
    /// The state a node is set to.
    DesiredState => one_of(
        "`suspended` refuses every consume and claim (of the node and everything below it); `active` counts.",
        &rules::SETTABLE_STATES,
    )
}

named_schema! {
    /// A grant's subject.
    Subject => string("A user or ServiceAccount name (`system:serviceaccount:<namespace>:<name>`), or `group:<name>`: 1 to 512 characters, none of them a control character.")
        .pattern(Some(rules::SUBJECT_PATTERN))
        .min_length(Some(1))
        .max_length(Some(rules::MAX_SUBJECT_CHARS))
        .examples(["system:serviceaccount:team-a:web"])
}

named_schema! {
    /// Amounts of a batch item.
    ItemUsage => ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Amounts by resource name, as in a single consume; an item whose amounts or names a single call would refuse fails alone (its `status` and `error` say why) and the others are counted."))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(u64::MAX)),
        ))
}

named_schema! {
    /// A grant's role.
    Role => one_of(
        "reader < reporter (`read` is its older name) < admin < owner; each role holds the ones before it and is inherited down the subtree.",
        &rules::ROLES,
    )
}

/// A limit of a built-in resource: its window is fixed (or left out).
fn builtin_limit(window: &str) -> RefOr<Schema> {
    let fixed = ObjectBuilder::new().property(
        "window",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([window])),
    );
    let mut all = utoipa::openapi::schema::AllOfBuilder::new()
        .item(reference::<crate::v1::LimitBody>())
        .item(fixed);
    all = all.description(Some(format!(
        "A built-in resource: its window is always `{window}`."
    )));
    RefOr::T(Schema::AllOf(all.build()))
}

/// A map keyed by resource name.
fn by_resource(description: &str, value: RefOr<Schema>, min: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .property_names(Some(ResourceName::schema()))
        .additional_properties(Some(value))
        .min_properties((min > 0).then_some(min))
}

fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()))
}

named_schema! {
    /// A node's limits by resource.
    Limits uses [crate::v1::LimitBody] => by_resource(
        "Limits by resource name; each key appears once. A node's limits are exactly the ones named. A limit without a window inherits the parent's window for the resource (409 `no_window_to_inherit` when there is none).",
        reference::<crate::v1::LimitBody>(),
        0,
    )
    .property("messages", builtin_limit("day"))
    .property("bandwidth", builtin_limit("month"))
}

named_schema! {
    /// Amounts to count, by resource.
    Usage uses [Amount] => by_resource(
        "Amounts by resource name, at least one; each key appears once.",
        reference::<Amount>(),
        1,
    )
}

named_schema! {
    /// Any JSON value (an audit record's before and after).
    AnyValue => ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some("Any JSON value."))
}

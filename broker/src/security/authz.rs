//! Authorization: the broker's ACLs (`acl.rs`) checked on requests, and the
//! ACL APIs (CreateAcls 30, DescribeAcls 29, DeleteAcls 31).
//!
//! ACLs live in the metadata store, one key per binding under `<P>/acls/`,
//! and every broker follows them with a watch (`follow`) into a cache that
//! checks read lock-free. A handler asks `topic(op, name)`, `group(op, name)`
//! or `cluster(op)` about the request it serves: the request's session (its
//! principal and address) is set for the handler's whole future by
//! `api::handle` (`with_session`), so handlers need no extra parameter, and
//! work done outside a request (the broker's own) is never checked. With
//! `--authorizer` off every check passes (and the ACL APIs answer
//! SECURITY_DISABLED, as Kafka's do without an authorizer).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, RequestHeader,
};
use laminar_coord::cluster::keys::escape;
use laminar_coord::cluster::Keys;
use laminar_coord::{MetaStore, Op, WatchItem};

use super::acl::{
    Acl, AclFilter, AclSet, Operation, PatternFilter, PatternType, Permission, Policy, ResourceType, CLUSTER_NAME,
};
use super::session::Session;
use crate::api::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};

pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const SECURITY_DISABLED: i16 = 54;

/// ACL bindings one CreateAcls or DeleteAcls request may name.
const ACLS_PER_REQUEST_MAX: usize = 1000;

tokio::task_local! {
    /// The session of the request being handled.
    static SESSION: Rc<Session>;
}

/// Runs a request's handler with its session visible to the checks.
pub async fn with_session<F: std::future::Future>(session: Rc<Session>, f: F) -> F::Output {
    SESSION.scope(session, f).await
}

/// The authorizer: on or off, its policy, and the ACLs as last seen.
pub struct Authorizer {
    pub enabled: bool,
    pub policy: Policy,
    acls: ArcSwap<AclSet>,
}

impl Authorizer {
    pub fn new(enabled: bool, policy: Policy) -> Authorizer {
        Authorizer { enabled, policy, acls: ArcSwap::from_pointee(AclSet::default()) }
    }

    fn replace(&self, acls: Vec<Acl>) {
        self.acls.store(Arc::new(AclSet { acls }));
    }
}

/// Whether the current request's principal may do `op` on the resource.
fn allowed(ctx: &Ctx, op: Operation, resource_type: ResourceType, name: &str) -> bool {
    let authz = &ctx.security.authorizer;
    if !authz.enabled {
        return true;
    }
    SESSION
        .try_with(|session| {
            let principal = format!("User:{}", session.principal());
            let host = session.peer.ip().to_string();
            let ok = authz.acls.load().authorize(&authz.policy, &principal, &host, op, resource_type, name);
            if !ok {
                tracing::debug!(%principal, %host, ?op, ?resource_type, name, "denied");
            }
            ok
        })
        // Not inside a request: the broker's own work.
        .unwrap_or(true)
}

pub fn topic(ctx: &Ctx, op: Operation, name: &str) -> Result<(), KafkaError> {
    if allowed(ctx, op, ResourceType::Topic, name) {
        return Ok(());
    }
    Err(KafkaError::new(TOPIC_AUTHORIZATION_FAILED, format!("not authorized to {op:?} topic {name}")))
}

pub fn group(ctx: &Ctx, op: Operation, name: &str) -> Result<(), KafkaError> {
    if allowed(ctx, op, ResourceType::Group, name) {
        return Ok(());
    }
    Err(KafkaError::new(GROUP_AUTHORIZATION_FAILED, format!("not authorized to {op:?} group {name}")))
}

pub fn cluster(ctx: &Ctx, op: Operation) -> Result<(), KafkaError> {
    if allowed(ctx, op, ResourceType::Cluster, CLUSTER_NAME) {
        return Ok(());
    }
    Err(KafkaError::new(CLUSTER_AUTHORIZATION_FAILED, format!("not authorized to {op:?} the cluster")))
}

/// Creating a topic: CREATE on the cluster or on the topic (Kafka's rule).
pub fn create_topic(ctx: &Ctx, name: &str) -> Result<(), KafkaError> {
    cluster(ctx, Operation::Create).or_else(|_| topic(ctx, Operation::Create, name))
}

/// An idempotent producer's InitProducerId: IDEMPOTENT_WRITE on the
/// cluster, or WRITE on any topic (Kafka since 2.8).
pub fn idempotent_write(ctx: &Ctx) -> Result<(), KafkaError> {
    if cluster(ctx, Operation::IdempotentWrite).is_ok() {
        return Ok(());
    }
    let authz = &ctx.security.authorizer;
    let any_write = SESSION
        .try_with(|session| {
            let principal = format!("User:{}", session.principal());
            authz.acls.load().allows_any(
                &principal,
                &session.peer.ip().to_string(),
                Operation::Write,
                ResourceType::Topic,
            )
        })
        .unwrap_or(true);
    if any_write {
        return Ok(());
    }
    Err(KafkaError::new(CLUSTER_AUTHORIZATION_FAILED, "not authorized to IdempotentWrite"))
}

/// The key of one ACL binding: every field, escaped, so one binding is one
/// key (creating it twice is one ACL, as in Kafka).
fn acl_key(keys: &Keys, a: &Acl) -> String {
    format!(
        "{}{}/{}/{}/{}/{}/{}/{}",
        keys.acls(),
        a.resource_type.code(),
        a.pattern_type.code(),
        escape(&a.resource_name),
        escape(&a.principal),
        escape(&a.host),
        a.operation.code(),
        a.permission.code()
    )
}

fn parse_acls(entries: impl IntoIterator<Item = Vec<u8>>) -> Vec<Acl> {
    entries.into_iter().filter_map(|v| serde_json::from_slice(&v).ok()).collect()
}

/// Keeps the authorizer's ACLs current (runs on the control thread until
/// the store ends the watch).
pub async fn follow(store: Arc<dyn MetaStore>, keys: Keys, authz: Arc<super::SecurityState>) {
    let mut current: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut watch = store.watch(&keys.acls());
    while let Some(item) = watch.next().await {
        match item {
            WatchItem::Reset { entries, .. } => {
                current = entries.into_iter().map(|(k, v)| (k, v.value)).collect();
            }
            WatchItem::Changes { events, .. } => {
                for e in events {
                    match e {
                        laminar_coord::WatchEvent::Put { key, value } => {
                            current.insert(key, value.value);
                        }
                        laminar_coord::WatchEvent::Delete { key } => {
                            current.remove(&key);
                        }
                    }
                }
            }
        }
        authz.authorizer.replace(parse_acls(current.values().cloned()));
    }
}

/// All ACLs, read from the store (the APIs answer from the store, not the cache).
async fn stored(ctx: &Ctx) -> Result<Vec<(String, Acl)>, String> {
    let listed = ctx.cluster.store.list(&ctx.cluster.keys.acls()).await.map_err(|e| e.to_string())?;
    Ok(listed.into_iter().filter_map(|(k, v)| serde_json::from_slice(&v.value).ok().map(|a| (k, a))).collect())
}

fn check_principal(p: &str) -> Result<(), String> {
    match p.split_once(':') {
        Some(("User", name)) if !name.is_empty() => Ok(()),
        _ => Err(format!("principal '{p}' must be User:<name> or User:*")),
    }
}

fn acl_from_creation(c: &kafka_protocol::messages::create_acls_request::AclCreation) -> Result<Acl, String> {
    let resource_type = ResourceType::from_code(c.resource_type)
        .ok_or(format!("resource type {} is not supported", c.resource_type))?;
    let pattern_type = PatternType::from_code(c.resource_pattern_type)
        .ok_or(format!("pattern type {} is not LITERAL (3) or PREFIXED (4)", c.resource_pattern_type))?;
    let operation = Operation::from_code(c.operation).ok_or(format!("operation {} is not supported", c.operation))?;
    let permission = Permission::from_code(c.permission_type)
        .ok_or(format!("permission {} is not ALLOW or DENY", c.permission_type))?;
    check_principal(&c.principal)?;
    let name = c.resource_name.to_string();
    if name.is_empty() {
        return Err("resource name must not be empty".into());
    }
    if resource_type == ResourceType::Cluster && (name != CLUSTER_NAME || pattern_type != PatternType::Literal) {
        return Err(format!("the cluster resource is LITERAL {CLUSTER_NAME}"));
    }
    Ok(Acl {
        resource_type,
        resource_name: name,
        pattern_type,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation,
        permission,
    })
}

pub async fn create(ctx: &Ctx, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: CreateAclsRequest = decode(header, body)?;
    let refuse_all = |code: i16, msg: String| {
        let results = req
            .creations
            .iter()
            .map(|_| AclCreationResult::default().with_error_code(code).with_error_message(Some(s(msg.clone()))))
            .collect();
        CreateAclsResponse::default().with_results(results)
    };
    if !ctx.security.authorizer.enabled {
        return respond(header, &refuse_all(SECURITY_DISABLED, "no authorizer is configured (--authorizer)".into()));
    }
    if let Err(e) = cluster(ctx, Operation::Alter) {
        return respond(header, &refuse_all(e.code, e.message));
    }
    if req.creations.len() > ACLS_PER_REQUEST_MAX {
        return respond(header, &refuse_all(errors::INVALID_REQUEST, format!("at most {ACLS_PER_REQUEST_MAX} ACLs")));
    }
    let mut results = Vec::with_capacity(req.creations.len());
    for c in &req.creations {
        let r = match acl_from_creation(c) {
            Err(msg) => {
                AclCreationResult::default().with_error_code(errors::INVALID_REQUEST).with_error_message(Some(s(msg)))
            }
            Ok(acl) => {
                let value = serde_json::to_vec(&acl).expect("an ACL serializes");
                match ctx.cluster.store.put(&acl_key(&ctx.cluster.keys, &acl), value).await {
                    Ok(_) => {
                        tracing::info!(?acl, "ACL created");
                        AclCreationResult::default().with_error_message(None)
                    }
                    Err(e) => AclCreationResult::default()
                        .with_error_code(errors::UNKNOWN_SERVER_ERROR)
                        .with_error_message(Some(s(format!("storing the ACL: {e}")))),
                }
            }
        };
        results.push(r);
    }
    respond(header, &CreateAclsResponse::default().with_results(results))
}

/// A Describe/Delete filter from the request's fields. `Err`: a code Kafka
/// does not allow in a filter.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&str>,
    pattern: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<Option<AclFilter>, String> {
    // ANY (1) matches all; a type we do not store (USER, DELEGATION_TOKEN) matches none.
    let resource_type = match resource_type {
        1 => None,
        6 | 7 => return Ok(None),
        c => Some(ResourceType::from_code(c).ok_or(format!("resource type filter {c} is invalid"))?),
    };
    let pattern = match pattern {
        1 => PatternFilter::Any,
        2 => PatternFilter::Match,
        c => PatternFilter::Exactly(PatternType::from_code(c).ok_or(format!("pattern type filter {c} is invalid"))?),
    };
    let operation = match operation {
        1 => None,
        c => Some(Operation::from_code(c).ok_or(format!("operation filter {c} is invalid"))?),
    };
    let permission = match permission {
        1 => None,
        c => Some(Permission::from_code(c).ok_or(format!("permission filter {c} is invalid"))?),
    };
    Ok(Some(AclFilter {
        resource_type,
        resource_name: name.map(str::to_string),
        pattern,
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation,
        permission,
    }))
}

pub async fn describe(ctx: &Ctx, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DescribeAclsRequest = decode(header, body)?;
    let resp = DescribeAclsResponse::default();
    if !ctx.security.authorizer.enabled {
        let msg = "no authorizer is configured (--authorizer)";
        return respond(header, &resp.with_error_code(SECURITY_DISABLED).with_error_message(Some(s(msg))));
    }
    if let Err(e) = cluster(ctx, Operation::Describe) {
        return respond(header, &resp.with_error_code(e.code).with_error_message(Some(s(e.message))));
    }
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(msg) => {
            return respond(header, &resp.with_error_code(errors::INVALID_REQUEST).with_error_message(Some(s(msg))))
        }
    };
    let acls = match stored(ctx).await {
        Ok(a) => a,
        Err(e) => {
            let msg = format!("reading ACLs: {e}");
            return respond(
                header,
                &resp.with_error_code(errors::UNKNOWN_SERVER_ERROR).with_error_message(Some(s(msg))),
            );
        }
    };
    // Grouped by resource pattern, as Kafka answers.
    let mut by_resource: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> = BTreeMap::new();
    for (_, a) in acls.into_iter().filter(|(_, a)| f.as_ref().is_some_and(|f| f.matches(a))) {
        by_resource.entry((a.resource_type, a.resource_name.clone(), a.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(s(a.principal))
                .with_host(s(a.host))
                .with_operation(a.operation.code())
                .with_permission_type(a.permission.code()),
        );
    }
    let resources = by_resource
        .into_iter()
        .map(|((t, name, p), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(t.code())
                .with_resource_name(s(name))
                .with_pattern_type(p.code())
                .with_acls(acls)
        })
        .collect();
    respond(header, &resp.with_error_message(None).with_resources(resources))
}

pub async fn delete(ctx: &Ctx, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DeleteAclsRequest = decode(header, body)?;
    let refuse_all = |code: i16, msg: String| {
        let results = req
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(code).with_error_message(Some(s(msg.clone()))))
            .collect();
        DeleteAclsResponse::default().with_filter_results(results)
    };
    if !ctx.security.authorizer.enabled {
        return respond(header, &refuse_all(SECURITY_DISABLED, "no authorizer is configured (--authorizer)".into()));
    }
    if let Err(e) = cluster(ctx, Operation::Alter) {
        return respond(header, &refuse_all(e.code, e.message));
    }
    if req.filters.len() > ACLS_PER_REQUEST_MAX {
        return respond(
            header,
            &refuse_all(errors::INVALID_REQUEST, format!("at most {ACLS_PER_REQUEST_MAX} filters")),
        );
    }
    let acls = match stored(ctx).await {
        Ok(a) => a,
        Err(e) => return respond(header, &refuse_all(errors::UNKNOWN_SERVER_ERROR, format!("reading ACLs: {e}"))),
    };
    let mut results = Vec::with_capacity(req.filters.len());
    for rf in &req.filters {
        let f = filter(
            rf.resource_type_filter,
            rf.resource_name_filter.as_deref(),
            rf.pattern_type_filter,
            rf.principal_filter.as_deref(),
            rf.host_filter.as_deref(),
            rf.operation,
            rf.permission_type,
        );
        let f = match f {
            Ok(f) => f,
            Err(msg) => {
                results.push(
                    DeleteAclsFilterResult::default()
                        .with_error_code(errors::INVALID_REQUEST)
                        .with_error_message(Some(s(msg))),
                );
                continue;
            }
        };
        let matching: Vec<&(String, Acl)> =
            acls.iter().filter(|(_, a)| f.as_ref().is_some_and(|f| f.matches(a))).collect();
        let ops: Vec<Op> = matching.iter().map(|(k, _)| Op::delete(k.clone())).collect();
        let deleted = if ops.is_empty() { Ok(()) } else { ctx.cluster.store.txn(Vec::new(), ops).await.map(|_| ()) };
        let result = match deleted {
            Err(e) => DeleteAclsFilterResult::default()
                .with_error_code(errors::UNKNOWN_SERVER_ERROR)
                .with_error_message(Some(s(format!("deleting ACLs: {e}")))),
            Ok(()) => DeleteAclsFilterResult::default().with_error_message(None).with_matching_acls(
                matching
                    .iter()
                    .map(|(_, a)| {
                        tracing::info!(acl = ?a, "ACL deleted");
                        DeleteAclsMatchingAcl::default()
                            .with_error_message(None)
                            .with_resource_type(a.resource_type.code())
                            .with_resource_name(s(a.resource_name.clone()))
                            .with_pattern_type(a.pattern_type.code())
                            .with_principal(s(a.principal.clone()))
                            .with_host(s(a.host.clone()))
                            .with_operation(a.operation.code())
                            .with_permission_type(a.permission.code())
                    })
                    .collect(),
            ),
        };
        results.push(result);
    }
    respond(header, &DeleteAclsResponse::default().with_filter_results(results))
}

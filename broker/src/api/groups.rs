//! FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13),
//! SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42):
//! decode, send to the group's owner shard (`group::GroupMsg`), encode the
//! answer for the request's version.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use tokio::sync::oneshot;

use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors;
use crate::group::{self, GroupMsg, JoinArgs, SyncArgs};
use crate::placement;
use crate::security::acl::Operation;
use crate::security::{authz, Session};
use crate::shard::ShardMsg;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Sends `msg` to the shard holding the group, if this broker coordinates
/// it, and waits for the answer. NOT_COORDINATOR sends the client back to
/// FindCoordinator; the group's shard checks again (the view may be ahead of
/// what the shard has loaded).
pub(crate) async fn ask<T>(ctx: &Ctx, group: &str, msg: impl FnOnce(oneshot::Sender<T>) -> GroupMsg) -> Result<T, i16> {
    match placement::coordinator(&ctx.view(), group) {
        Some(node) if node == ctx.cluster.node_id() => {}
        Some(_) => return Err(errors::NOT_COORDINATOR),
        None => return Err(errors::COORDINATOR_NOT_AVAILABLE),
    }
    let (tx, rx) = oneshot::channel();
    let shard = placement::group_shard(group, ctx.router.shards());
    ctx.router.send(shard, ShardMsg::Group(msg(tx))).map_err(|_| errors::COORDINATOR_NOT_AVAILABLE)?;
    rx.await.map_err(|_| errors::COORDINATOR_NOT_AVAILABLE)
}

/// `ask`, once the principal may do `op` on the group (else GROUP_AUTHORIZATION_FAILED).
async fn ask_as<T>(
    ctx: &Ctx,
    op: Operation,
    group: &str,
    msg: impl FnOnce(oneshot::Sender<T>) -> GroupMsg,
) -> Result<T, i16> {
    authz::group(ctx, op, group).map_err(|e| e.code)?;
    ask(ctx, group, msg).await
}

fn opt(s_: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    s_.as_ref().map(|v| v.to_string())
}

/// A coordinator's answer: (error, message, (node, host, port)).
type Found = (i16, Option<String>, Option<(i32, String, i32)>);

/// Where a group (or transactional id) is coordinated. Groups: the owner of
/// the group's coordinator slot, from the cluster view. Transactional ids:
/// this broker, so a transactional producer reaches InitProducerId and fails
/// fast there (transactions are not supported) instead of retrying lookups.
fn locate(ctx: &Ctx, listener: &str, key_type: i8, key: &str) -> Found {
    let denied = match key_type {
        KEY_TYPE_GROUP => authz::group(ctx, Operation::Describe, key).err(),
        _ => None,
    };
    if let Some(e) = denied {
        return (e.code, Some(e.message), None);
    }
    let view = ctx.view();
    let node = match key_type {
        KEY_TYPE_GROUP => placement::coordinator(&view, key),
        KEY_TYPE_TRANSACTION => Some(ctx.cluster.node_id()),
        other => return (errors::INVALID_REQUEST, Some(format!("unknown coordinator key type {other}")), None),
    };
    let at = |n| view.broker(n)?.record.endpoint(listener).map(|(host, port)| (n, host.to_string(), port as i32));
    match node.and_then(at) {
        Some(at) => (errors::NONE, None, Some(at)),
        // Slots not assigned yet (a starting cluster) or their owner just died:
        // retriable, the client asks again.
        None => (errors::COORDINATOR_NOT_AVAILABLE, Some("no live coordinator for this key yet".into()), None),
    }
}

pub fn find_coordinator(ctx: &Ctx, session: &Session, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let listener = session.listener.name.as_str();
    let req: FindCoordinatorRequest = decode(header, body)?;
    let resp = if header.request_api_version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let (code, msg, at) = locate(ctx, listener, req.key_type, key);
                let co =
                    Coordinator::default().with_key(key.clone()).with_error_code(code).with_error_message(msg.map(s));
                match at {
                    Some((node, host, port)) => co.with_node_id(BrokerId(node)).with_host(s(host)).with_port(port),
                    None => co.with_node_id(BrokerId(-1)).with_port(-1),
                }
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let (code, msg, at) = locate(ctx, listener, req.key_type, &req.key);
        let r = FindCoordinatorResponse::default().with_error_code(code);
        let r = if header.request_api_version >= 1 { r.with_error_message(msg.map(s)) } else { r };
        match at {
            Some((node, host, port)) => r.with_node_id(BrokerId(node)).with_host(s(host)).with_port(port),
            None => r.with_node_id(BrokerId(-1)).with_port(-1),
        }
    };
    respond(header, &resp)
}

pub async fn join(ctx: &Rc<Ctx>, peer: &str, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: JoinGroupRequest = decode(header, body)?;
    let version = header.request_api_version;
    let group_id = req.group_id.0.to_string();
    if group_id.is_empty() {
        return respond(
            header,
            &JoinGroupResponse::default().with_error_code(errors::INVALID_GROUP_ID).with_generation_id(-1),
        );
    }
    let args = JoinArgs {
        group: group_id.clone(),
        member_id: req.member_id.to_string(),
        instance_id: opt(&req.group_instance_id),
        client_id: opt(&header.client_id).unwrap_or_default(),
        client_host: format!("/{}", peer.rsplit_once(':').map_or(peer, |(h, _)| h)),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let result = ask_as(ctx, Operation::Read, &group_id, |reply| GroupMsg::Join { args, reply })
        .await
        .unwrap_or_else(|code| group::JoinResult { error: code, generation: -1, ..Default::default() });
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_group_instance_id(instance.map(s))
                .with_metadata(metadata)
        })
        .collect();
    let resp = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_protocol_type(result.protocol_type.map(s))
        .with_protocol_name(result.protocol_name.map(s))
        .with_leader(s(result.leader))
        .with_member_id(s(result.member_id))
        .with_skip_assignment(result.skip_assignment)
        .with_members(members);
    respond(header, &resp)
}

pub async fn sync(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: SyncGroupRequest = decode(header, body)?;
    let group_id = req.group_id.0.to_string();
    let args = SyncArgs {
        group: group_id.clone(),
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: opt(&req.group_instance_id),
        protocol_type: opt(&req.protocol_type),
        protocol_name: opt(&req.protocol_name),
        assignments: req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    let result = ask_as(ctx, Operation::Read, &group_id, |reply| GroupMsg::Sync { args, reply })
        .await
        .unwrap_or_else(|code| group::SyncResult { error: code, ..Default::default() });
    let resp = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_protocol_type(result.protocol_type.map(s))
        .with_protocol_name(result.protocol_name.map(s))
        .with_assignment(result.assignment);
    respond(header, &resp)
}

pub async fn heartbeat(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: HeartbeatRequest = decode(header, body)?;
    let group_id = req.group_id.0.to_string();
    let code = ask_as(ctx, Operation::Read, &group_id, |reply| GroupMsg::Heartbeat {
        group: group_id.clone(),
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: opt(&req.group_instance_id),
        reply,
    })
    .await
    .unwrap_or_else(|code| code);
    respond(header, &HeartbeatResponse::default().with_error_code(code))
}

pub async fn leave(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: LeaveGroupRequest = decode(header, body)?;
    let version = header.request_api_version;
    let group_id = req.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members.iter().map(|m| (m.member_id.to_string(), opt(&m.group_instance_id))).collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let result = ask_as(ctx, Operation::Read, &group_id, |reply| GroupMsg::Leave {
        group: group_id.clone(),
        members: members.clone(),
        reply,
    })
    .await
    .and_then(|r| r);
    let resp = match (result, version >= 3) {
        (Err(code), _) => LeaveGroupResponse::default().with_error_code(code),
        (Ok(codes), false) => LeaveGroupResponse::default().with_error_code(codes[0]),
        (Ok(codes), true) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(codes)
                .map(|((id, instance), code)| {
                    MemberResponse::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(instance.map(s))
                        .with_error_code(code)
                })
                .collect(),
        ),
    };
    respond(header, &resp)
}

pub async fn describe(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DescribeGroupsRequest = decode(header, body)?;
    let ops = super::authorized_ops::group(header.request_api_version >= 3 && req.include_authorized_operations);
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let id = g.0.to_string();
        let d = ask_as(ctx, Operation::Describe, &id, |reply| GroupMsg::Describe { group: id.clone(), reply })
            .await
            .and_then(|r| r);
        let entry = DescribedGroup::default().with_group_id(g);
        groups.push(match d {
            Err(code) => entry.with_error_code(code),
            Ok(d) => entry
                .with_authorized_operations(ops)
                .with_group_state(s(d.state))
                .with_protocol_type(s(d.protocol_type))
                .with_protocol_data(s(d.protocol))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(s(m.member_id))
                                .with_group_instance_id(m.instance_id.map(s))
                                .with_client_id(s(m.client_id))
                                .with_client_host(s(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
        });
    }
    respond(header, &DescribeGroupsResponse::default().with_groups(groups))
}

pub async fn list(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: ListGroupsRequest = decode(header, body)?;
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut waits = Vec::new();
    for shard in 0..ctx.router.shards() {
        let (tx, rx) = oneshot::channel();
        if ctx.router.send(shard, ShardMsg::Group(GroupMsg::List { reply: tx })).is_ok() {
            waits.push(rx);
        }
    }
    let mut listed = Vec::new();
    for w in waits {
        listed.extend(w.await.unwrap_or_default());
    }
    listed.sort();
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        // DESCRIBE on the cluster lists every group; else those the principal may describe.
        .filter(|(id, _, _)| {
            authz::cluster(ctx, Operation::Describe).is_ok() || authz::group(ctx, Operation::Describe, id).is_ok()
        })
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(s(id)))
                .with_protocol_type(s(protocol_type))
                .with_group_state(s(state))
                .with_group_type(s("classic"))
        })
        .collect();
    respond(header, &ListGroupsResponse::default().with_groups(groups))
}

pub async fn delete(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DeleteGroupsRequest = decode(header, body)?;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let id = g.0.to_string();
        let code = ask_as(ctx, Operation::Delete, &id, |reply| GroupMsg::Delete { group: id.clone(), reply })
            .await
            .unwrap_or_else(|c| c);
        results.push(DeletableGroupResult::default().with_group_id(g).with_error_code(code));
    }
    respond(header, &DeleteGroupsResponse::default().with_results(results))
}

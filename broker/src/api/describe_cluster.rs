//! DescribeCluster (60): the live brokers and the controller, from the cluster view.

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader};

use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors;
use crate::security::Session;

/// KIP-919 endpoint types: 1 = brokers (the only listener kind we have).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(ctx: &Ctx, session: &Session, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DescribeClusterRequest = decode(header, body)?;
    if header.request_api_version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        let msg = format!("endpoint type {} is not served (only 1, brokers)", req.endpoint_type);
        let resp = DescribeClusterResponse::default()
            .with_error_code(errors::INVALID_REQUEST)
            .with_error_message(Some(s(msg)));
        return respond(header, &resp);
    }
    if let Err(e) = crate::security::authz::cluster(ctx, crate::security::acl::Operation::Describe) {
        let resp = DescribeClusterResponse::default().with_error_code(e.code).with_error_message(Some(s(e.message)));
        return respond(header, &resp);
    }
    let view = ctx.view();
    let brokers = view
        .brokers
        .values()
        .filter_map(|b| {
            let (host, port) = b.record.endpoint(&session.listener.name)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.record.node_id))
                    .with_host(s(host))
                    .with_port(port as i32)
                    .with_rack(b.record.rack.clone().map(s)),
            )
        })
        .collect();
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(s(ctx.config.cluster_id.clone()))
        .with_controller_id(BrokerId(view.controller_id().unwrap_or(-1)))
        .with_endpoint_type(ENDPOINT_BROKERS)
        .with_cluster_authorized_operations(super::authorized_ops::cluster(req.include_cluster_authorized_operations))
        .with_brokers(brokers);
    respond(header, &resp)
}

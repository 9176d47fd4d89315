//! InitProducerId (22): a producer id and epoch for an idempotent producer
//! (`broker/src/producer_ids.rs` hands them out; partitions check the
//! sequences, `laminar_engine::producer_state`).
//!
//! Transactions are not supported: a request with a transactional id gets
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED. Every client treats that code as
//! fatal for the transactional producer and surfaces it at once (Java:
//! `TransactionalIdAuthorizationException` from `initTransactions()`,
//! librdkafka: a fatal error), where retriable codes such as
//! COORDINATOR_NOT_AVAILABLE would make clients retry forever; the response
//! has no message field, so the log line below says what happened.

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader};

use super::{decode, respond, HandlerResult};
use crate::context::Ctx;
use crate::errors;

pub async fn handle(ctx: &Ctx, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: InitProducerIdRequest = decode(header, body)?;
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let result = if let Some(txn) = &req.transactional_id {
        tracing::info!(transactional_id = %txn.0.as_str(), "InitProducerId refused: transactions are not supported");
        Err(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if let Err(e) = crate::security::authz::idempotent_write(ctx) {
        Err(e.code)
    } else if (pid == -1) != (epoch == -1) {
        // v3+: both are -1 (new producer) or both set (epoch bump, KIP-360).
        Err(errors::INVALID_REQUEST)
    } else {
        // A v3+ request naming its id and epoch (KIP-360) gets a fresh id
        // too: see `ProducerIds::init` for why.
        ctx.producer_ids.init().await.map_err(|e| {
            tracing::warn!("InitProducerId: {e}");
            // Retriable for every client: the store may be back on the next try.
            errors::COORDINATOR_NOT_AVAILABLE
        })
    };
    let resp = match result {
        Ok((id, epoch)) => {
            InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(epoch)
        }
        Err(code) => InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    };
    respond(header, &resp)
}

//! A follower's connection to its leader: Kafka Fetch requests (v12, the
//! first version with `LastFetchedEpoch` and `DivergingEpoch`) over the
//! leader's ordinary listener, one request at a time. Record data arrives as
//! slices of the response frame, appended to the follower's log as they are.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::security::inter_broker::{self, ClientStream};

/// The Fetch version followers send.
pub const FETCH_VERSION: i16 = 12;
/// Largest response a follower accepts (it asks for far less).
const RESPONSE_BYTES_MAX: usize = 256 << 20;

pub struct Channel {
    /// TLS and SASL as the inter-broker listener needs (`security/inter_broker.rs`).
    stream: ClientStream,
    correlation_id: i32,
    client_id: StrBytes,
}

impl Channel {
    pub async fn connect(host: &str, port: u16, me: i32, timeout: Duration) -> std::io::Result<Channel> {
        let client_id = format!("laminar-replica-{me}");
        let stream = inter_broker::connect(host, port, &client_id, timeout).await?;
        Ok(Channel { stream, correlation_id: 0, client_id: StrBytes::from_string(client_id) })
    }

    /// Sends one Fetch and reads its answer, within `timeout`.
    pub async fn fetch(&mut self, req: &FetchRequest, timeout: Duration) -> anyhow::Result<FetchResponse> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut b = BytesMut::with_capacity(256);
        b.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(FETCH_VERSION)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()))
            .encode(&mut b, ApiKey::Fetch.request_header_version(FETCH_VERSION))?;
        req.encode(&mut b, FETCH_VERSION)?;
        let len = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            self.stream.write_all(&b).await?;
            self.stream.flush().await?;
            let size = self.stream.read_i32().await?;
            anyhow::ensure!(size >= 4 && size as usize <= RESPONSE_BYTES_MAX, "response of {size} bytes");
            let mut frame = BytesMut::zeroed(size as usize);
            self.stream.read_exact(&mut frame).await?;
            anyhow::Ok(frame.freeze())
        };
        let mut frame: Bytes =
            tokio::time::timeout(timeout, exchange).await.map_err(|_| anyhow::anyhow!("fetch timed out"))??;
        let h = ResponseHeader::decode(&mut frame, ApiKey::Fetch.response_header_version(FETCH_VERSION))?;
        anyhow::ensure!(
            h.correlation_id == self.correlation_id,
            "answer to request {} arrived for {}",
            h.correlation_id,
            self.correlation_id
        );
        let resp = FetchResponse::decode(&mut frame, FETCH_VERSION)?;
        anyhow::ensure!(!frame.has_remaining(), "{} bytes after the fetch response", frame.remaining());
        Ok(resp)
    }
}

/// The whole batches at the front of a fetch's record data (a leader cuts the
/// last one at the byte budget, as Kafka does; it is fetched again next time).
pub fn whole_batches(records: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while records.len() - pos >= laminar_engine::batch::HEADER_LEN {
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if len < 0 {
            break;
        }
        let total = laminar_engine::batch::LOG_OVERHEAD + len as usize;
        if records.len() - pos < total {
            break;
        }
        out.push(records.slice(pos..pos + total));
        pos += total;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_last_batch_is_left_for_the_next_fetch() {
        let mut b = laminar_client::BatchBuilder::new(laminar_client::Compression::None);
        b.append(1, None, Some(b"x"), &[]).unwrap();
        let one = b.finish().unwrap();
        let mut all = BytesMut::new();
        all.extend_from_slice(&one);
        all.extend_from_slice(&one);
        all.extend_from_slice(&one[..one.len() - 3]);
        let all = all.freeze();
        let batches = whole_batches(&all);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], one);
        assert!(whole_batches(&Bytes::new()).is_empty());
    }
}

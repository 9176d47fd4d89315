//! A response on its way to the socket: encoded bytes, and for Fetch, file
//! ranges that go from the page cache to the socket with sendfile(2).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use laminar_engine::FileSlice;

pub enum Chunk {
    Bytes(Bytes),
    File(FileSlice),
}

/// Everything after the 4-byte size prefix.
pub struct Response {
    pub chunks: Vec<Chunk>,
}

impl Response {
    pub fn byte_len(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| match c {
                Chunk::Bytes(b) => b.len() as u64,
                Chunk::File(f) => f.len,
            })
            .sum()
    }

    /// Encodes a header and body with the codec, in one buffer.
    pub fn encode<R: Encodable + HeaderVersion>(
        correlation_id: i32,
        version: i16,
        body: &R,
    ) -> anyhow::Result<Response> {
        let header_version = R::header_version(version);
        let mut buf = BytesMut::with_capacity(64);
        ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut buf, header_version)?;
        body.encode(&mut buf, version)?;
        Ok(Response { chunks: vec![Chunk::Bytes(buf.freeze())] })
    }

    /// A header for a hand-encoded body (Fetch).
    pub fn header_bytes(api: ApiKey, version: i16, correlation_id: i32, buf: &mut BytesMut) {
        buf.put_i32(correlation_id);
        if api.response_header_version(version) >= 1 {
            buf.put_u8(0); // no tagged fields
        }
    }
}

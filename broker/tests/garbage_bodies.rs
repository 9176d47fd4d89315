//! Every API the broker serves, at every version, with bodies of random
//! bytes and with valid headers: each gets an answer or a clean close, and
//! the broker keeps serving. (A decoder that trusted an array length could
//! otherwise allocate gigabytes or abort the process.)

mod common;

use std::io::Write;

use bytes::{BufMut, BytesMut};
use common::{call, Laminar};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// xorshift: reproducible garbage without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_bodies_for_every_api_and_version() {
    let l = Laminar::start(&[]);
    let mut probe = l.connect();
    let versions: ApiVersionsResponse = call(&mut probe, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut cases = 0;
    for api in &versions.api_keys {
        let key = ApiKey::try_from(api.api_key).unwrap();
        for version in api.min_version..=api.max_version {
            for round in 0..24 {
                let Ok(mut s) = std::net::TcpStream::connect(&l.addr) else {
                    panic!("broker died after {key:?} v{version} round {round}:\n{}", l.log_text());
                };
                s.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
                let mut f = BytesMut::new();
                f.put_i32(0);
                RequestHeader::default()
                    .with_request_api_key(api.api_key)
                    .with_request_api_version(version)
                    .with_correlation_id(round)
                    .with_client_id(Some(StrBytes::from_static_str("fuzz")))
                    .encode(&mut f, key.request_header_version(version))
                    .unwrap();
                // Mostly 0xff-heavy bytes: huge lengths and counts are the dangerous inputs.
                let len = (rng.next() % 64) as usize;
                for _ in 0..len {
                    let r = rng.next();
                    f.put_u8(if r.is_multiple_of(3) { 0xff } else { (r >> 8) as u8 });
                }
                let size = (f.len() - 4) as i32;
                f[..4].copy_from_slice(&size.to_be_bytes());
                let _ = s.write_all(&f);
                // Whatever the answer (response, close, or a long-poll fetch), move on.
                let _ = common::read_frame(&mut s);
                cases += 1;
            }
        }
        // After each API, the broker must still answer.
        let mut s = l.connect();
        let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(r.error_code, 0, "broker stopped answering after garbage {key:?} bodies");
    }
    assert!(cases > 500);
    let log = l.log_text();
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
}

/// A valid 16 MiB Metadata v9 request naming 8 million topics of null names:
/// the codec would build 600 MB of structures for it. It goes over the decode
/// budget (8 MiB + 4 × the frame), so the broker closes that connection with
/// one log line saying so, and keeps serving.
#[test]
fn a_request_over_the_decode_budget_closes_its_connection_only() {
    let l = Laminar::start(&[]);
    let mut s = l.connect();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut f = BytesMut::new();
    f.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(9)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("budget")))
        .encode(&mut f, ApiKey::Metadata.request_header_version(9))
        .unwrap();
    let topics = 8 * 1024 * 1024;
    // Compact array of topics + 1, each a null name and no tagged fields.
    let mut n = topics as u32 + 1;
    while n >= 0x80 {
        f.put_u8(n as u8 | 0x80);
        n >>= 7;
    }
    f.put_u8(n as u8);
    f.put_bytes(0, topics * 2);
    f.put_slice(&[1, 0, 0, 0]); // auto-create, cluster and topic operations, tags
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    s.write_all(&f).unwrap();
    assert!(common::closed_by_broker(&mut s), "an over-budget request is not answered: its connection closes");
    let mut probe = l.connect();
    let r: ApiVersionsResponse = call(&mut probe, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    assert!(
        l.log_contains("decode memory budget exceeded"),
        "the broker logs why it closed the connection:\n{}",
        l.log_text()
    );
}

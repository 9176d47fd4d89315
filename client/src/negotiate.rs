//! API version negotiation: ApiVersions first, then the highest version both sides support.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use bytes::Buf;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Message, StrBytes};

use crate::connection::{decode_body, Connection};
use crate::error::{Error, Result};

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;
/// The ApiVersions version tried first (KIP-511; what librdkafka sends).
const API_VERSIONS_FIRST: i16 = 3;

/// The versions this client can build and read for each API it calls. The upper ends stop
/// before versions that identify topics by id only (Produce 13, Fetch 13+, DeleteTopics 6),
/// since the client addresses topics by name.
pub fn client_range(api: ApiKey) -> Option<RangeInclusive<i16>> {
    let range = match api {
        ApiKey::ApiVersions => 0..=3,
        ApiKey::Metadata => 1..=12,
        ApiKey::Produce => 3..=12,
        ApiKey::Fetch => 4..=12,
        ApiKey::ListOffsets => 1..=8,
        ApiKey::CreateTopics => 2..=7,
        ApiKey::DeleteTopics => 1..=5,
        _ => return None,
    };
    // Never ask for a version kafka-protocol cannot encode.
    let codec = api.valid_versions();
    Some(*range.start().max(&codec.min)..=*range.end().min(&codec.max))
}

/// The broker's advertised version range per API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionTable {
    ranges: BTreeMap<i16, (i16, i16)>,
}

impl ApiVersionTable {
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let ranges = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Self { ranges }
    }

    /// The broker's (min, max) for `api`, if it offers the API at all.
    pub fn range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// The highest version in both the broker's range and this client's range for `api`.
    pub fn pick(&self, api: ApiKey) -> Result<i16> {
        let name = api_name(api);
        let client = client_range(api).ok_or(Error::UnsupportedApi(name))?;
        self.pick_within(api, client)
    }

    /// The highest version in both the broker's range and `preferred`.
    pub fn pick_within(&self, api: ApiKey, preferred: RangeInclusive<i16>) -> Result<i16> {
        let name = api_name(api);
        let (broker_min, broker_max) = self.range(api).ok_or(Error::UnsupportedApi(name))?;
        let top = broker_max.min(*preferred.end());
        if top < broker_min.max(*preferred.start()) {
            return Err(Error::UnsupportedVersion {
                api: name,
                broker_min,
                broker_max,
                client_min: *preferred.start(),
                client_max: *preferred.end(),
            });
        }
        Ok(top)
    }

    pub fn iter(&self) -> impl Iterator<Item = (i16, i16, i16)> + '_ {
        self.ranges.iter().map(|(&k, &(min, max))| (k, min, max))
    }
}

fn api_name(api: ApiKey) -> &'static str {
    // ApiKey's Debug names are the Kafka names; leak-free static mapping for the few we call.
    match api {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        _ => "another API",
    }
}

/// Asks the broker which versions it supports: ApiVersions v3 first; a broker that does not
/// know v3 answers UNSUPPORTED_VERSION with a v0-shaped body, and the request is repeated at
/// the highest version it then reports (v0 when it reports none).
pub async fn negotiate(conn: &Connection) -> Result<ApiVersionTable> {
    let mut version = API_VERSIONS_FIRST;
    for _attempt in 0..2 {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("laminar-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let body = conn.submit(&request, version).await?.raw_body().await?;
        // error_code leads the body in every version, so it can be read before choosing a decoder.
        let error_code = if body.len() >= 2 { (&body[..2]).get_i16() } else { -1 };
        if error_code == UNSUPPORTED_VERSION && version > 0 {
            let fallback: ApiVersionsResponse = decode_body(body, 0)?;
            let table = ApiVersionTable::from_response(&fallback);
            version = match table.range(ApiKey::ApiVersions) {
                Some((min, max)) if min <= max => max.min(version - 1).max(min).max(ApiVersionsResponse::VERSIONS.min),
                _ => 0,
            };
            continue;
        }
        let response: ApiVersionsResponse = decode_body(body, version)?;
        if response.error_code != 0 {
            return Err(Error::Broker { code: response.error_code, context: format!("ApiVersions v{version}") });
        }
        return Ok(ApiVersionTable::from_response(&response));
    }
    Err(Error::Broker { code: UNSUPPORTED_VERSION, context: "ApiVersions after falling back".into() })
}

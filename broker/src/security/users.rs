//! SCRAM users: DescribeUserScramCredentials (50) and
//! AlterUserScramCredentials (51), over `<P>/scram/<user>/<mechanism>` in the
//! metadata store. Clients send the salted password (never the password);
//! the broker keeps StoredKey and ServerKey derived from it (`scram.rs`).
//! As Kafka does, a user's alterations in one request succeed or fail
//! together, and a user named twice for one mechanism is refused.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, RequestHeader,
};
use laminar_coord::cluster::ScramCredentialRecord;
use laminar_coord::Op;

use super::scram::{Credential, Mechanism, ITERATIONS_MAX, ITERATIONS_MIN, USER_BYTES_MAX};
use super::session::Session;
use crate::api::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors;

pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
const UNSUPPORTED_SASL_MECHANISM: i16 = super::sasl::UNSUPPORTED_SASL_MECHANISM;

/// Users one request may name (each is a store read or write).
const USERS_PER_REQUEST_MAX: usize = 1000;

/// Every user with credentials: user → mechanisms with their iteration counts.
async fn all_users(ctx: &Ctx) -> Result<BTreeMap<String, Vec<(Mechanism, u32)>>, String> {
    let keys = &ctx.cluster.keys;
    let listed = ctx.cluster.store.list(&keys.scram_users()).await.map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, Vec<(Mechanism, u32)>> = BTreeMap::new();
    for (key, v) in listed {
        let Some((user, mech)) = keys.parse_scram(&key) else { continue };
        let Some(mech) = Mechanism::parse(&mech) else { continue };
        let Ok(record) = serde_json::from_slice::<ScramCredentialRecord>(&v.value) else { continue };
        out.entry(user).or_default().push((mech, record.iterations));
    }
    Ok(out)
}

pub async fn describe(ctx: &Ctx, _session: &Session, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DescribeUserScramCredentialsRequest = decode(header, body)?;
    let mut resp = DescribeUserScramCredentialsResponse::default();
    if let Err(e) = super::authz::cluster(ctx, super::acl::Operation::Describe) {
        return respond(header, &resp.with_error_code(e.code).with_error_message(Some(s(e.message))));
    }
    let users = match all_users(ctx).await {
        Ok(u) => u,
        Err(e) => {
            resp.error_code = errors::UNKNOWN_SERVER_ERROR;
            resp.error_message = Some(s(format!("reading credentials: {e}")));
            return respond(header, &resp);
        }
    };
    let info = |creds: &Vec<(Mechanism, u32)>| {
        creds
            .iter()
            .map(|(m, i)| CredentialInfo::default().with_mechanism(m.kafka_type()).with_iterations(*i as i32))
            .collect()
    };
    match req.users {
        None => {
            for (user, creds) in &users {
                resp.results.push(
                    DescribeUserScramCredentialsResult::default()
                        .with_user(s(user.clone()))
                        .with_credential_infos(info(creds)),
                );
            }
        }
        Some(asked) => {
            let mut seen = BTreeSet::new();
            let duplicates: BTreeSet<String> =
                asked.iter().map(|u| u.name.to_string()).filter(|n| !seen.insert(n.clone())).collect();
            let mut done = BTreeSet::new();
            for name in asked.iter().map(|u| u.name.to_string()) {
                if !done.insert(name.clone()) {
                    continue;
                }
                let r = DescribeUserScramCredentialsResult::default().with_user(s(name.clone()));
                let r = if duplicates.contains(&name) {
                    r.with_error_code(DUPLICATE_RESOURCE).with_error_message(Some(s(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                    ))))
                } else {
                    match users.get(&name) {
                        Some(creds) => r.with_credential_infos(info(creds)),
                        None => r.with_error_code(RESOURCE_NOT_FOUND).with_error_message(Some(s(format!(
                            "Attempt to describe a user credential that does not exist: {name}"
                        )))),
                    }
                };
                resp.results.push(r);
            }
        }
    }
    respond(header, &resp)
}

/// One user's alterations, checked.
#[derive(Default)]
struct UserChanges {
    ops: Vec<Op>,
    /// Deletions of credentials that must exist.
    deletes: Vec<String>,
    /// Mechanisms named, to catch duplicates.
    mechanisms: Vec<Mechanism>,
    error: Option<(i16, String)>,
}

impl UserChanges {
    fn refuse(&mut self, code: i16, msg: String) {
        self.error.get_or_insert((code, msg));
    }
}

pub async fn alter(ctx: &Ctx, _session: &Session, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: AlterUserScramCredentialsRequest = decode(header, body)?;
    let keys = &ctx.cluster.keys;
    let mut users: BTreeMap<String, UserChanges> = BTreeMap::new();
    for d in &req.deletions {
        let name = d.name.to_string();
        let c = users.entry(name.clone()).or_default();
        match Mechanism::from_kafka_type(d.mechanism) {
            None => c.refuse(UNSUPPORTED_SASL_MECHANISM, format!("Unknown SCRAM mechanism {}", d.mechanism)),
            Some(m) if c.mechanisms.contains(&m) => c.refuse(
                DUPLICATE_RESOURCE,
                format!("A user credential cannot be altered twice in the same request: {name}"),
            ),
            Some(m) => {
                c.mechanisms.push(m);
                let key = keys.scram_credential(&name, m.name());
                c.deletes.push(key.clone());
                c.ops.push(Op::delete(key));
            }
        }
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        let c = users.entry(name.clone()).or_default();
        let mech = Mechanism::from_kafka_type(u.mechanism);
        match mech {
            None => c.refuse(UNSUPPORTED_SASL_MECHANISM, format!("Unknown SCRAM mechanism {}", u.mechanism)),
            Some(m) if c.mechanisms.contains(&m) => c.refuse(
                DUPLICATE_RESOURCE,
                format!("A user credential cannot be altered twice in the same request: {name}"),
            ),
            Some(m) => {
                c.mechanisms.push(m);
                let iterations = u.iterations;
                if !(ITERATIONS_MIN as i32..=ITERATIONS_MAX as i32).contains(&iterations) {
                    c.refuse(
                        UNACCEPTABLE_CREDENTIAL,
                        format!("Iterations must be in [{ITERATIONS_MIN}, {ITERATIONS_MAX}], not {iterations}"),
                    );
                } else if u.salt.is_empty() || u.salted_password.is_empty() {
                    c.refuse(UNACCEPTABLE_CREDENTIAL, "Salt and salted password must not be empty".into());
                } else {
                    let cred = Credential::from_salted_password(m, &u.salted_password, &u.salt, iterations as u32);
                    let value = serde_json::to_vec(&cred.to_record()).expect("a record serializes");
                    c.ops.push(Op::put(keys.scram_credential(&name, m.name()), value));
                }
            }
        }
    }
    let denied = super::authz::cluster(ctx, super::acl::Operation::Alter).err();
    let mut resp = AlterUserScramCredentialsResponse::default();
    for (name, mut c) in users {
        if let Some(e) = &denied {
            c.refuse(e.code, e.message.clone());
        }
        if name.is_empty() || name.len() > USER_BYTES_MAX {
            c.refuse(UNACCEPTABLE_CREDENTIAL, format!("Username must be 1 to {USER_BYTES_MAX} bytes"));
        }
        if resp.results.len() >= USERS_PER_REQUEST_MAX {
            c.refuse(errors::INVALID_REQUEST, format!("at most {USERS_PER_REQUEST_MAX} users per request"));
        }
        if c.error.is_none() {
            c.error = apply(ctx, &name, &c).await.err();
        }
        let (code, msg) = c.error.map_or((0, None), |(code, msg)| (code, Some(s(msg))));
        resp.results.push(
            AlterUserScramCredentialsResult::default().with_user(s(name)).with_error_code(code).with_error_message(msg),
        );
    }
    respond(header, &resp)
}

async fn apply(ctx: &Ctx, name: &str, c: &UserChanges) -> Result<(), (i16, String)> {
    let store = &ctx.cluster.store;
    let io = |e: laminar_coord::CoordError| (errors::UNKNOWN_SERVER_ERROR, format!("credential store: {e}"));
    for key in &c.deletes {
        if store.get(key).await.map_err(io)?.is_none() {
            return Err((
                RESOURCE_NOT_FOUND,
                format!("Attempt to delete a user credential that does not exist: {name}"),
            ));
        }
    }
    store.txn(Vec::new(), c.ops.clone()).await.map_err(io)?;
    tracing::info!(user = name, changes = c.ops.len(), "SCRAM credentials altered");
    Ok(())
}

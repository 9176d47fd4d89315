//! `group list|describe|reset-offsets|delete`, through the Kafka protocol
//! (ListGroups on every broker; DescribeGroups, OffsetFetch, OffsetCommit
//! and DeleteGroups at the group's coordinator), as Kafka's
//! `kafka-consumer-groups.sh` does them.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use laminar_client::OffsetSpec;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::{self, CtlError, Exit, Result};
use crate::kafka::Kafka;
use crate::output::{opt, Report, Table};
use crate::time;
use crate::Mode;

/// UNKNOWN_MEMBER_ID: a simple (member-less) commit to a group that has
/// members; NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND: DeleteGroups' refusals.
const UNKNOWN_MEMBER_ID: i16 = 25;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("scope").args(["topic", "all_topics"]).required(true)))]
#[command(group(
    clap::ArgGroup::new("to")
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])
        .required(true)
))]
pub struct ResetArgs {
    /// The group id.
    pub group: String,
    /// A topic (every partition) or `topic:0,2,5` (those partitions); repeat for several.
    #[arg(long, value_name = "TOPIC[:PARTITIONS]", value_parser = parse_topic_partitions)]
    pub topic: Vec<(String, Option<Vec<i32>>)>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// To each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To each partition's end (the high watermark): skip everything there is.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (kept within [log start, end]).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// To the first record at or after this time: `YYYY-MM-DDTHH:MM:SS[.sss][Z|±HH:MM]`
    /// (UTC without a zone) or milliseconds since 1970.
    #[arg(long, value_name = "DATETIME", value_parser = time::parse_datetime)]
    pub to_datetime: Option<i64>,
    /// Moves the committed offset by N (negative: back), kept within [log start, end].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    #[command(flatten)]
    pub mode: Mode,
}

/// `orders` or `orders:0,2,5`.
pub fn parse_topic_partitions(s: &str) -> Result<(String, Option<Vec<i32>>), String> {
    let (topic, parts) = match s.split_once(':') {
        Some((t, p)) => (t, Some(p)),
        None => (s, None),
    };
    if topic.is_empty() {
        return Err(format!("'{s}' names no topic: expected TOPIC or TOPIC:0,1,2"));
    }
    let parts = match parts {
        None => None,
        Some(p) => Some(
            p.split(',')
                .map(|x| x.trim().parse::<i32>().ok().filter(|n| *n >= 0))
                .collect::<Option<Vec<i32>>>()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("'{s}': partitions must be numbers separated by commas (TOPIC:0,1,2)"))?,
        ),
    };
    Ok((topic.to_string(), parts))
}

/// Where a reset moves one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    /// The offset ListOffsets found for the time, or -1 when no record is
    /// that late (then the end, as Kafka's tool does).
    Datetime,
    ShiftBy(i64),
}

/// The new committed offset of one partition, or why there is none.
/// `found` is ListOffsets' answer for `--to-datetime`.
pub fn target_offset(
    to: ResetTo,
    start: i64,
    end: i64,
    committed: Option<i64>,
    found: Option<i64>,
) -> Result<i64, String> {
    let clamp = |o: i64| o.clamp(start, end.max(start));
    match to {
        ResetTo::Earliest => Ok(start),
        ResetTo::Latest => Ok(end),
        ResetTo::Offset(o) => Ok(clamp(o)),
        ResetTo::Datetime => match found {
            Some(o) if o >= 0 => Ok(clamp(o)),
            _ => Ok(end),
        },
        ResetTo::ShiftBy(n) => match committed {
            Some(c) => Ok(clamp(c.saturating_add(n))),
            None => Err("no committed offset to shift from (use --to-earliest, --to-latest or --to-offset)".into()),
        },
    }
}

#[derive(Debug, Serialize)]
struct Listed {
    group: String,
    state: String,
    protocol_type: String,
    coordinator: i32,
}

pub async fn list(ctx: &Ctx) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let md = kafka.metadata(Some(&[])).await?;
    let mut rows: BTreeMap<String, Listed> = BTreeMap::new();
    let mut failures = Vec::new();
    // Every broker coordinates some groups: ask them all, as Kafka's tool does.
    for b in &md.brokers {
        let conn = match kafka.broker(b.node_id).await {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("broker {}: {}", b.node_id, e.message));
                continue;
            }
        };
        let resp = match kafka.call(&conn, &ListGroupsRequest::default(), 0..=4).await {
            Ok((resp, _)) => resp,
            Err(e) => {
                failures.push(format!("broker {}: {}", b.node_id, e.message));
                continue;
            }
        };
        if resp.error_code != 0 {
            failures.push(format!("broker {}: {}", b.node_id, error::code_text(resp.error_code, None)));
            continue;
        }
        for g in resp.groups {
            let state = if g.group_state.is_empty() { "-".to_string() } else { g.group_state.to_string() };
            rows.insert(
                g.group_id.0.to_string(),
                Listed {
                    group: g.group_id.0.to_string(),
                    state,
                    protocol_type: g.protocol_type.to_string(),
                    coordinator: b.node_id,
                },
            );
        }
    }
    let rows: Vec<Listed> = rows.into_values().collect();
    let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]);
    for l in &rows {
        let pt = if l.protocol_type.is_empty() { "-".to_string() } else { l.protocol_type.clone() };
        t.row(vec![l.group.clone(), l.state.clone(), pt, l.coordinator.to_string()]);
    }
    let mut r = Report::new(&rows);
    r.table(t);
    if !failures.is_empty() {
        let msg = format!("some brokers did not list their groups: {}", failures.join("; "));
        return Ok(r.fail(CtlError::unreachable(msg)));
    }
    Ok(r)
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// topic → partitions (the consumer protocol's assignment).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Debug, Clone)]
struct Described {
    state: String,
    protocol_type: String,
    assignor: String,
    members: Vec<Member>,
}

async fn describe_group(kafka: &Kafka, group: &str) -> Result<Described> {
    kafka
        .with_coordinator(group, |conn| async move {
            let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group.into()))]);
            let (resp, _) = kafka.call(&conn, &req, 0..=5).await?;
            let Some(g) = resp.groups.into_iter().next() else {
                return Err(CtlError::failed(format!("the coordinator did not describe group {group}")));
            };
            if g.error_code != 0 {
                return Ok(Err(g.error_code));
            }
            let members = g
                .members
                .into_iter()
                .map(|m| Member {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: parse_assignment(m.member_assignment).unwrap_or_default(),
                })
                .collect();
            Ok(Ok(Described {
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                assignor: g.protocol_data.to_string(),
                members,
            }))
        })
        .await
}

/// The consumer protocol's assignment (version, then topics with their
/// partitions, then user data), as `kafka-consumer-groups.sh` reads it.
/// `None` when it is not one (another protocol type, or empty).
pub fn parse_assignment(mut b: Bytes) -> Option<BTreeMap<String, Vec<i32>>> {
    if b.remaining() < 2 + 4 {
        return None;
    }
    let _version = b.get_i16();
    let topics = b.get_i32();
    if topics < 0 {
        return None;
    }
    let mut out = BTreeMap::new();
    for _ in 0..topics {
        if b.remaining() < 2 {
            return None;
        }
        let len = b.get_i16();
        if len < 0 || b.remaining() < len as usize + 4 {
            return None;
        }
        let name = String::from_utf8(b.split_to(len as usize).to_vec()).ok()?;
        let n = b.get_i32();
        if n < 0 || b.remaining() < n as usize * 4 {
            return None;
        }
        let parts: Vec<i32> = (0..n).map(|_| b.get_i32()).collect();
        out.entry(name).or_insert_with(Vec::new).extend(parts);
    }
    Some(out)
}

/// Committed offsets of the group (every partition it has one for).
async fn committed(kafka: &Kafka, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
    kafka
        .with_coordinator(group, |conn| async move {
            // Null topics: everything the group committed (v2+).
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.into())))
                .with_topics(None);
            let (resp, _) = kafka.call(&conn, &req, 2..=7).await?;
            if resp.error_code != 0 {
                return Ok(Err(resp.error_code));
            }
            let mut out = BTreeMap::new();
            for t in resp.topics {
                for p in t.partitions {
                    if p.error_code == 0 && p.committed_offset >= 0 {
                        out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                    }
                }
            }
            Ok(Ok(out))
        })
        .await
}

#[derive(Debug, Serialize)]
pub struct OffsetRow {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: Option<i64>,
    pub end_offset: Option<i64>,
    pub lag: Option<i64>,
    pub member_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub assignor: String,
    pub coordinator: i32,
    pub members: Vec<Member>,
    pub offsets: Vec<OffsetRow>,
}

/// The coordinator's node id, for display.
async fn coordinator_id(kafka: &Kafka, group: &str) -> i32 {
    match kafka.coordinator(group).await {
        Ok(conn) => {
            let peer = conn.connection().peer().to_string();
            let md = kafka.metadata(Some(&[])).await.ok();
            md.and_then(|m| m.brokers.iter().find(|b| b.address() == peer).map(|b| b.node_id)).unwrap_or(-1)
        }
        Err(_) => -1,
    }
}

/// Lag = end offset (high watermark) - committed offset, per partition.
pub fn lag(committed: Option<i64>, end: Option<i64>) -> Option<i64> {
    match (committed, end) {
        (Some(c), Some(e)) => Some((e - c).max(0)),
        _ => None,
    }
}

pub async fn describe(ctx: &Ctx, group: &str) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let d = describe_group(kafka, group).await?;
    let offsets = committed(kafka, group).await?;
    if d.state == "Dead" && d.members.is_empty() && offsets.is_empty() {
        return Err(CtlError::not_found(format!(
            "unknown group {group}: no member and no committed offset (`group list` shows the groups)"
        )));
    }
    // Every partition that is assigned or has a committed offset.
    let mut owner: BTreeMap<(String, i32), &Member> = BTreeMap::new();
    for m in &d.members {
        for (t, ps) in &m.assignment {
            for &p in ps {
                owner.insert((t.clone(), p), m);
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = offsets.keys().cloned().chain(owner.keys().cloned()).collect();
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let topics: BTreeSet<&String> = keys.iter().map(|(t, _)| t).collect();
    for t in topics {
        let Ok(tm) = kafka.topic(t).await else { continue };
        let parts: Vec<i32> = keys.iter().filter(|(x, _)| x == t).map(|(_, p)| *p).collect();
        for (p, r) in kafka.list_offsets(&tm, &parts, OffsetSpec::Latest).await? {
            if let Ok(o) = r {
                ends.insert((t.clone(), p), o);
            }
        }
    }
    let rows: Vec<OffsetRow> = keys
        .iter()
        .map(|k| {
            let m = owner.get(k);
            let c = offsets.get(k).copied();
            let e = ends.get(k).copied();
            OffsetRow {
                topic: k.0.clone(),
                partition: k.1,
                committed_offset: c,
                end_offset: e,
                lag: lag(c, e),
                member_id: m.map(|m| m.member_id.clone()),
                host: m.map(|m| m.host.clone()),
                client_id: m.map(|m| m.client_id.clone()),
            }
        })
        .collect();
    let desc = GroupDescription {
        group: group.to_string(),
        state: d.state.clone(),
        protocol_type: d.protocol_type.clone(),
        assignor: d.assignor.clone(),
        coordinator: coordinator_id(kafka, group).await,
        members: d.members.clone(),
        offsets: rows,
    };
    Ok(render_description(&desc))
}

pub fn render_description(d: &GroupDescription) -> Report {
    let mut r = Report::new(d);
    let dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
    r.line(format!(
        "group {}  state {}  protocol {}  assignor {}  coordinator {}  members {}",
        d.group,
        d.state,
        dash(&d.protocol_type),
        dash(&d.assignor),
        if d.coordinator >= 0 { d.coordinator.to_string() } else { "-".into() },
        d.members.len()
    ));
    r.line("");
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for o in &d.offsets {
        t.row(vec![
            o.topic.clone(),
            o.partition.to_string(),
            opt(o.committed_offset),
            opt(o.end_offset),
            opt(o.lag),
            opt(o.member_id.clone()),
            opt(o.host.clone()),
            opt(o.client_id.clone()),
        ]);
    }
    r.table(t);
    if !d.members.is_empty() {
        r.line("");
        let mut m = Table::new(&["CONSUMER-ID", "INSTANCE-ID", "HOST", "CLIENT-ID", "ASSIGNMENT"]);
        for x in &d.members {
            let assignment: Vec<String> = x
                .assignment
                .iter()
                .map(|(t, ps)| format!("{t}:{}", ps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")))
                .collect();
            m.row(vec![
                x.member_id.clone(),
                opt(x.instance_id.clone()),
                x.host.clone(),
                x.client_id.clone(),
                if assignment.is_empty() { "-".into() } else { assignment.join(" ") },
            ]);
        }
        r.table(m);
    }
    r
}

#[derive(Debug, Serialize)]
pub struct ResetRow {
    pub topic: String,
    pub partition: i32,
    pub current_offset: Option<i64>,
    pub new_offset: Option<i64>,
    /// Why this partition has no new offset, or why its commit failed.
    pub error: Option<String>,
}

pub async fn reset_offsets(ctx: &Ctx, a: ResetArgs) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let group = a.group.as_str();
    let d = describe_group(kafka, group).await?;
    if !d.members.is_empty() {
        return Err(CtlError::failed(format!(
            "group {group} is active ({} member(s), state {}): offsets can only be reset while it has no \
             members; stop its consumers and try again",
            d.members.len(),
            d.state
        )));
    }
    let current = committed(kafka, group).await?;
    // Which partitions.
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if a.all_topics {
        for (t, p) in current.keys() {
            wanted.entry(t.clone()).or_default().push(*p);
        }
        if wanted.is_empty() {
            return Err(CtlError::not_found(format!(
                "group {group} has no committed offsets: --all-topics names nothing; name topics with --topic"
            )));
        }
    }
    for (t, parts) in &a.topic {
        let tm = kafka.topic(t).await?;
        let all: Vec<i32> = tm.partitions.iter().map(|p| p.partition).collect();
        let chosen = match parts {
            None => all,
            Some(ps) => {
                if let Some(bad) = ps.iter().find(|p| !all.contains(p)) {
                    return Err(CtlError::not_found(format!(
                        "topic {t} has no partition {bad} (it has {})",
                        all.len()
                    )));
                }
                ps.clone()
            }
        };
        let e = wanted.entry(t.clone()).or_default();
        e.extend(chosen);
        e.sort_unstable();
        e.dedup();
    }
    let to = match (a.to_earliest, a.to_latest, a.to_offset, a.to_datetime, a.shift_by) {
        (true, ..) => ResetTo::Earliest,
        (_, true, ..) => ResetTo::Latest,
        (_, _, Some(o), ..) => ResetTo::Offset(o),
        (_, _, _, Some(_), _) => ResetTo::Datetime,
        (.., Some(n)) => ResetTo::ShiftBy(n),
        _ => {
            return Err(CtlError::usage(
                "say where to: --to-earliest, --to-latest, --to-offset, --to-datetime or --shift-by",
            ))
        }
    };
    let mut rows = Vec::new();
    for (t, parts) in &wanted {
        let tm = match kafka.topic(t).await {
            Ok(tm) => tm,
            // A committed topic since deleted (--all-topics): nothing to reset to.
            Err(e) if e.exit == Exit::NotFound => {
                for &p in parts {
                    rows.push(ResetRow {
                        topic: t.clone(),
                        partition: p,
                        current_offset: current.get(&(t.clone(), p)).copied(),
                        new_offset: None,
                        error: Some("the topic no longer exists".into()),
                    });
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let starts = kafka.list_offsets(&tm, parts, OffsetSpec::Earliest).await?;
        let ends = kafka.list_offsets(&tm, parts, OffsetSpec::Latest).await?;
        let found = match a.to_datetime {
            Some(ms) => Some(kafka.list_offsets(&tm, parts, OffsetSpec::Timestamp(ms)).await?),
            None => None,
        };
        for &p in parts {
            let cur = current.get(&(t.clone(), p)).copied();
            let lookup = |m: &BTreeMap<i32, std::result::Result<i64, i16>>| m.get(&p).cloned().unwrap_or(Err(3));
            let outcome = match (lookup(&starts), lookup(&ends)) {
                (Ok(s), Ok(e)) => {
                    let f = match &found {
                        Some(m) => match lookup(m) {
                            Ok(o) => Some(o),
                            Err(c) => {
                                rows.push(row(t, p, cur, Err(error::code_text(c, None))));
                                continue;
                            }
                        },
                        None => None,
                    };
                    target_offset(to, s, e, cur, f)
                }
                (Err(c), _) | (_, Err(c)) => {
                    Err(format!("its leader could not say its offsets: {}", error::code_text(c, None)))
                }
            };
            rows.push(row(t, p, cur, outcome));
        }
    }
    let execute = a.mode.execute;
    if execute {
        commit(kafka, group, &mut rows).await?;
    }
    let mut r = Report::new(serde_json::json!({ "group": group, "executed": execute, "partitions": &rows }));
    let mut t = Table::new(&["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "ERROR"]);
    for x in &rows {
        t.row(vec![
            group.to_string(),
            x.topic.clone(),
            x.partition.to_string(),
            opt(x.current_offset),
            opt(x.new_offset),
            opt(x.error.clone()),
        ]);
    }
    r.table(t);
    let failed = rows.iter().filter(|x| x.error.is_some()).count();
    if execute {
        r.line(format!("committed new offsets for {} partition(s) of group {group}", rows.len() - failed));
    } else {
        r.line("dry run: nothing changed; run again with --execute to commit these offsets");
    }
    if failed > 0 {
        let msg = format!("{failed} partition(s) not reset (see ERROR)");
        return Ok(r.fail(CtlError::failed(msg)));
    }
    Ok(r)
}

fn row(topic: &str, partition: i32, current: Option<i64>, outcome: std::result::Result<i64, String>) -> ResetRow {
    let (new_offset, error) = match outcome {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(e)),
    };
    ResetRow { topic: topic.to_string(), partition, current_offset: current, new_offset, error }
}

/// Commits the rows' new offsets as a member-less ("simple") commit, which
/// the coordinator takes only while the group has no members.
async fn commit(kafka: &Kafka, group: &str, rows: &mut [ResetRow]) -> Result<()> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for x in rows.iter().filter(|x| x.error.is_none()) {
        let Some(o) = x.new_offset else { continue };
        topics.entry(&x.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(x.partition)
                .with_committed_offset(o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from_static_str(""))),
        );
    }
    if topics.is_empty() {
        return Ok(());
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let codes: BTreeMap<(String, i32), i16> = kafka
        .with_coordinator(group, |conn| {
            let req = &req;
            async move {
                let (resp, _) = kafka.call(&conn, req, 2..=8).await?;
                let mut codes = BTreeMap::new();
                for t in resp.topics {
                    for p in t.partitions {
                        // A moving coordinator answers for every partition alike: ask again.
                        if crate::kafka::COORDINATOR_RETRY_CODES.contains(&p.error_code) {
                            return Ok(Err(p.error_code));
                        }
                        codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
                    }
                }
                Ok(Ok(codes))
            }
        })
        .await?;
    if codes.values().any(|&c| c == UNKNOWN_MEMBER_ID) {
        return Err(CtlError::failed(format!(
            "group {group} became active while resetting (a consumer joined): nothing was committed for its \
             partitions; stop its consumers and try again"
        )));
    }
    for x in rows.iter_mut() {
        if x.error.is_some() || x.new_offset.is_none() {
            continue;
        }
        match codes.get(&(x.topic.clone(), x.partition)) {
            Some(0) => {}
            Some(&c) => {
                x.error = Some(format!("commit refused: {}", error::code_text(c, None)));
            }
            None => x.error = Some("the coordinator did not answer for this partition".into()),
        }
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx, groups: &[String]) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let mut rep_rows = Vec::new();
    let mut failure: Option<CtlError> = None;
    for group in groups {
        let g = group.as_str();
        let code = kafka
            .with_coordinator(g, |conn| async move {
                let req =
                    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(StrBytes::from_string(g.into()))]);
                let (resp, _) = kafka.call(&conn, &req, 0..=2).await?;
                let code = resp.results.first().map_or(-1, |r| r.error_code);
                Ok(if crate::kafka::COORDINATOR_RETRY_CODES.contains(&code) { Err(code) } else { Ok(code) })
            })
            .await?;
        let e = match code {
            0 => {
                rep_rows.push(serde_json::json!({"group": g, "deleted": true}));
                continue;
            }
            NON_EMPTY_GROUP => {
                CtlError::failed(format!("group {g} has active members: stop its consumers, then delete it"))
            }
            GROUP_ID_NOT_FOUND => CtlError::not_found(format!("unknown group {g}")),
            c => CtlError::new(
                error::exit_for_code(c),
                format!("cannot delete group {g}: {}", error::code_text(c, None)),
            ),
        };
        rep_rows.push(serde_json::json!({"group": g, "deleted": false, "error": e.message}));
        failure = Some(e);
    }
    let mut r = Report::new(&rep_rows);
    for x in &rep_rows {
        match x["deleted"].as_bool() {
            Some(true) => r.line(format!("deleted group {}", x["group"].as_str().unwrap_or(""))),
            _ => r.line(format!(
                "not deleted: group {}: {}",
                x["group"].as_str().unwrap_or(""),
                x["error"].as_str().unwrap_or("")
            )),
        };
    }
    match failure {
        Some(e) if groups.len() == 1 => Err(e),
        Some(e) => Ok(r.fail(e)),
        None => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    #[test]
    fn targets_follow_kafkas_rules() {
        // Log [10, 50), committed 30.
        let t = |to, found| target_offset(to, 10, 50, Some(30), found);
        assert_eq!(t(ResetTo::Earliest, None), Ok(10));
        assert_eq!(t(ResetTo::Latest, None), Ok(50));
        assert_eq!(t(ResetTo::Offset(42), None), Ok(42));
        assert_eq!(t(ResetTo::Offset(5), None), Ok(10), "below the log start: the log start");
        assert_eq!(t(ResetTo::Offset(99), None), Ok(50), "past the end: the end");
        assert_eq!(t(ResetTo::ShiftBy(-5), None), Ok(25));
        assert_eq!(t(ResetTo::ShiftBy(-100), None), Ok(10));
        assert_eq!(t(ResetTo::ShiftBy(100), None), Ok(50));
        assert_eq!(t(ResetTo::Datetime, Some(20)), Ok(20));
        assert_eq!(t(ResetTo::Datetime, Some(-1)), Ok(50), "no record that late: the end");
        assert!(target_offset(ResetTo::ShiftBy(1), 0, 5, None, None).is_err());
        // An empty log.
        assert_eq!(target_offset(ResetTo::Offset(3), 0, 0, None, None), Ok(0));
    }

    #[test]
    fn topic_partition_flags() {
        assert_eq!(parse_topic_partitions("orders"), Ok(("orders".into(), None)));
        assert_eq!(parse_topic_partitions("orders:0,2"), Ok(("orders".into(), Some(vec![0, 2]))));
        for bad in ["", ":1", "orders:", "orders:a", "orders:-1"] {
            assert!(parse_topic_partitions(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn consumer_assignments_decode() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(2);
        for (t, ps) in [("orders", vec![0, 2]), ("b", vec![1])] {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
            b.put_i32(ps.len() as i32);
            for p in ps {
                b.put_i32(p);
            }
        }
        b.put_i32(-1); // no user data
        let a = parse_assignment(b.freeze()).unwrap();
        assert_eq!(a, [("orders".to_string(), vec![0, 2]), ("b".to_string(), vec![1])].into());
        assert_eq!(parse_assignment(Bytes::new()), None);
        assert_eq!(parse_assignment(Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 9, b'x'])), None, "truncated");
        assert_eq!(lag(Some(3), Some(10)), Some(7));
        assert_eq!(lag(None, Some(10)), None);
    }
}

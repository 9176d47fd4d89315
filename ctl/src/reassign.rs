//! `partition reassign plan|execute|verify|cancel|list` and `broker
//! decommission`: replicas move with AlterPartitionReassignments (KIP-455;
//! the broker adds the new replicas, and the controller removes the old
//! ones once the new are in sync), in Kafka's reassignment JSON, so plans
//! made here and by `kafka-reassign-partitions.sh` are interchangeable.
//!
//! There is no replication throttle in Laminar's brokers: new replicas
//! catch up as fast as the leader and the network let them. `--throttle`
//! is refused with that said, rather than accepted and ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{CtlError, Exit, Result};
use crate::output::{ids, Report, Table};
use crate::snapshot::{self, Part, Snapshot};
use crate::Mode;

/// How often `broker decommission --execute` looks at the cluster.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often it prints where it is (to stderr) while waiting.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Topics whose partitions to place (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "TOPICS", required = true)]
    pub topics: Vec<String>,
    /// Brokers to place them on (comma-separated node ids).
    #[arg(long, value_delimiter = ',', value_name = "IDS", required = true)]
    pub brokers: Vec<i32>,
    /// Also write the proposed plan to this file (for `execute --file`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ExecuteArgs {
    /// A reassignment JSON file (`plan --out`, or Kafka's format).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Replication throttle in bytes/s. Refused: Laminar brokers have no
    /// replication throttle.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub throttle: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct DecommissionArgs {
    /// The broker's node id.
    pub node: i32,
    /// With --execute: how long to wait for the moves and for nothing to be
    /// under-replicated.
    #[arg(long, default_value_t = 600_000, value_name = "MS")]
    pub wait_timeout_ms: u64,
    /// Replication throttle in bytes/s. Refused: Laminar brokers have no
    /// replication throttle.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub throttle: Option<u64>,
    #[command(flatten)]
    pub mode: Mode,
}

fn refuse_throttle(throttle: Option<u64>) -> Result<()> {
    match throttle {
        None => Ok(()),
        Some(_) => Err(CtlError::usage(
            "--throttle is not supported: Laminar brokers have no replication throttle, so moved replicas \
             catch up at full speed. Run without --throttle (move fewer partitions at a time to limit the load)",
        )),
    }
}

/// Kafka's reassignment JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFile {
    pub version: i32,
    pub partitions: Vec<PlanEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    /// Kafka's per-replica log directories: only `any` (the default) is
    /// meaningful to Laminar, which has one data directory per broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dirs: Option<Vec<String>>,
}

impl PlanFile {
    pub fn new(entries: Vec<PlanEntry>) -> PlanFile {
        PlanFile { version: 1, partitions: entries }
    }

    pub fn read(path: &Path) -> Result<PlanFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CtlError::usage(format!("cannot read {}: {e}", path.display())))?;
        let plan: PlanFile = serde_json::from_str(&text).map_err(|e| {
            CtlError::usage(format!(
                "{} is not a reassignment file ({e}): expected {{\"version\":1,\"partitions\":[{{\"topic\":..,\"partition\":..,\"replicas\":[..]}}]}}",
                path.display()
            ))
        })?;
        plan.validate().map_err(|e| CtlError::usage(format!("{}: {e}", path.display())))?;
        Ok(plan)
    }

    /// What the broker would refuse anyway, said before anything is sent.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.version != 1 {
            return Err(format!("version {} is not known (1 is)", self.version));
        }
        if self.partitions.is_empty() {
            return Err("it lists no partitions".into());
        }
        let mut seen = BTreeSet::new();
        for e in &self.partitions {
            let name = format!("{}-{}", e.topic, e.partition);
            if !seen.insert((e.topic.clone(), e.partition)) {
                return Err(format!("{name} is listed twice"));
            }
            if e.replicas.is_empty() {
                return Err(format!("{name} has no replicas"));
            }
            let unique: BTreeSet<i32> = e.replicas.iter().copied().collect();
            if unique.len() != e.replicas.len() {
                return Err(format!("{name} lists a broker twice"));
            }
            if let Some(dirs) = &e.log_dirs {
                if dirs.iter().any(|d| d != "any") {
                    return Err(format!(
                        "{name}: log_dirs other than \"any\" (Laminar brokers have one data directory)"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plans serialize")
    }
}

/// New replica lists for `parts` on `brokers`, moving as few replicas as
/// it can: each partition keeps its replicas on those brokers; replicas on
/// other brokers go to the brokers with the fewest; then, while one broker
/// holds two or more replicas more than another, one replica moves from
/// the fullest to the emptiest (in place). Preferred leaders are then
/// spread evenly by reordering.
pub fn plan_moves(parts: &[&Part], brokers: &[i32]) -> std::result::Result<Vec<PlanEntry>, String> {
    let targets: BTreeSet<i32> = brokers.iter().copied().collect();
    if targets.is_empty() {
        return Err("no brokers to place on".into());
    }
    let mut load: BTreeMap<i32, usize> = targets.iter().map(|&b| (b, 0)).collect();
    let mut lists: Vec<Vec<i32>> = Vec::with_capacity(parts.len());
    for p in parts {
        let rf = p.target().len();
        if rf > targets.len() {
            return Err(format!("{} has {rf} replicas but only {} brokers were given", p.name(), targets.len()));
        }
        let kept: Vec<i32> = p.target().into_iter().filter(|r| targets.contains(r)).collect();
        for r in &kept {
            *load.get_mut(r).expect("target") += 1;
        }
        lists.push(kept);
    }
    for (p, replicas) in parts.iter().zip(lists.iter_mut()) {
        // Put each replacement where the replica it replaces was.
        let mut filled: Vec<i32> = Vec::with_capacity(replicas.len());
        for r in p.target() {
            if targets.contains(&r) {
                filled.push(r);
                continue;
            }
            let next = *load
                .iter()
                .filter(|(b, _)| !replicas.contains(b) && !filled.contains(b))
                .min_by_key(|(b, l)| (**l, **b))
                .map(|(b, _)| b)
                .expect("rf <= brokers");
            *load.get_mut(&next).expect("target") += 1;
            filled.push(next);
        }
        *replicas = filled;
    }
    // Even out: each step moves one replica from a fullest broker to an
    // emptiest one, and narrows the gap, so it ends.
    let steps_max = parts.iter().map(|p| p.target().len()).sum::<usize>() + 1;
    for _ in 0..steps_max {
        let (&full, &most) = load.iter().max_by_key(|(b, l)| (**l, -**b)).expect("targets");
        let (&empty, &least) = load.iter().min_by_key(|(b, l)| (**l, **b)).expect("targets");
        if most <= least + 1 {
            break;
        }
        let Some(list) = lists.iter_mut().find(|l| l.contains(&full) && !l.contains(&empty)) else { break };
        let pos = list.iter().position(|&r| r == full).expect("contains");
        list[pos] = empty;
        *load.get_mut(&full).expect("target") -= 1;
        *load.get_mut(&empty).expect("target") += 1;
    }
    let mut out: Vec<PlanEntry> = parts
        .iter()
        .zip(lists)
        .map(|(p, replicas)| PlanEntry { topic: p.topic.clone(), partition: p.partition, replicas, log_dirs: None })
        .collect();
    spread_preferred(&mut out, &targets);
    Ok(out)
}

/// Reorders replica lists so each broker is preferred leader of about as
/// many partitions as the others (a partition keeps its first replica
/// unless that broker has more than its share).
fn spread_preferred(entries: &mut [PlanEntry], brokers: &BTreeSet<i32>) {
    let share = entries.len().div_ceil(brokers.len().max(1));
    let mut led: BTreeMap<i32, usize> = brokers.iter().map(|&b| (b, 0)).collect();
    let mut later = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let first = e.replicas[0];
        let l = led.entry(first).or_default();
        if *l < share {
            *l += 1;
        } else {
            later.push(i);
        }
    }
    for i in later {
        let e = &mut entries[i];
        let best = *e.replicas.iter().min_by_key(|r| (led.get(r).copied().unwrap_or(0), **r)).expect("non-empty");
        *led.entry(best).or_default() += 1;
        let pos = e.replicas.iter().position(|&r| r == best).expect("member");
        e.replicas[..=pos].rotate_right(1);
    }
}

fn entries_table(entries: &[PlanEntry], current: &BTreeMap<(String, i32), Vec<i32>>) -> Table {
    let mut t = Table::new(&["TOPIC", "PARTITION", "CURRENT", "PROPOSED"]);
    for e in entries {
        let cur = current.get(&(e.topic.clone(), e.partition)).map_or("-".to_string(), |c| ids(c));
        t.row(vec![e.topic.clone(), e.partition.to_string(), cur, ids(&e.replicas)]);
    }
    t
}

pub async fn plan(ctx: &Ctx, a: PlanArgs) -> Result<Report> {
    let snap = snapshot::take(ctx, "partition reassign plan").await?;
    for b in &a.brokers {
        if !snap.brokers.contains_key(b) {
            return Err(CtlError::not_found(format!(
                "broker {b} is not a live broker of this cluster (live: {})",
                ids(&snap.brokers.keys().copied().collect::<Vec<_>>())
            )));
        }
    }
    let mut parts: Vec<&Part> = Vec::new();
    for t in &a.topics {
        let of: Vec<&Part> = snap.parts.iter().filter(|p| &p.topic == t).collect();
        if of.is_empty() {
            return Err(CtlError::not_found(format!("unknown topic {t} (or none of its partitions is placed yet)")));
        }
        parts.extend(of);
    }
    let entries = plan_moves(&parts, &a.brokers).map_err(CtlError::usage)?;
    let current_entries: Vec<PlanEntry> = parts
        .iter()
        .map(|p| PlanEntry { topic: p.topic.clone(), partition: p.partition, replicas: p.target(), log_dirs: None })
        .collect();
    let current: BTreeMap<(String, i32), Vec<i32>> =
        current_entries.iter().map(|e| ((e.topic.clone(), e.partition), e.replicas.clone())).collect();
    let moving: Vec<PlanEntry> =
        entries.iter().filter(|e| current.get(&(e.topic.clone(), e.partition)) != Some(&e.replicas)).cloned().collect();
    let current_file = PlanFile::new(current_entries);
    let proposed = PlanFile::new(entries.clone());
    if let Some(path) = &a.out {
        std::fs::write(path, proposed.to_json() + "\n")
            .map_err(|e| CtlError::failed(format!("cannot write {}: {e}", path.display())))?;
    }
    let mut r =
        Report::new(serde_json::json!({ "current": current_file, "proposed": proposed, "changes": moving.len() }));
    r.table(entries_table(&entries, &current));
    r.line("");
    r.line(format!("{} of {} partition(s) change", moving.len(), entries.len()));
    r.line("Current partition replica assignment (keep it to roll back):");
    r.line(current_file.to_json());
    r.line("Proposed partition reassignment configuration:");
    r.line(proposed.to_json());
    if let Some(path) = &a.out {
        r.line(format!(
            "written to {}: `laminarctl partition reassign execute --file {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(r)
}

pub async fn execute(ctx: &Ctx, a: ExecuteArgs) -> Result<Report> {
    refuse_throttle(a.throttle)?;
    let file = PlanFile::read(&a.file)?;
    let kafka = ctx.kafka().await?;
    let md = kafka.metadata(None).await?;
    let mut current = BTreeMap::new();
    for e in &file.partitions {
        let t = md
            .topic(&e.topic)
            .filter(|t| t.error_code == 0)
            .ok_or_else(|| crate::kafka::unknown_topic(&e.topic, &kafka.bootstrap))?;
        let p = t.partitions.iter().find(|p| p.partition == e.partition).ok_or_else(|| {
            CtlError::not_found(format!(
                "topic {} has no partition {} (it has {})",
                e.topic,
                e.partition,
                t.partitions.len()
            ))
        })?;
        current.insert((e.topic.clone(), e.partition), p.replicas.clone());
    }
    let moves: Vec<(String, i32, Option<Vec<i32>>)> =
        file.partitions.iter().map(|e| (e.topic.clone(), e.partition, Some(e.replicas.clone()))).collect();
    let outcomes = kafka.alter_reassignments(&moves).await?;
    let rollback = PlanFile::new(
        file.partitions
            .iter()
            .map(|e| PlanEntry {
                topic: e.topic.clone(),
                partition: e.partition,
                replicas: current[&(e.topic.clone(), e.partition)].clone(),
                log_dirs: None,
            })
            .collect(),
    );
    report_submitted(&file.partitions, &current, &outcomes, Some(&rollback), &a.file)
}

fn report_submitted(
    entries: &[PlanEntry],
    current: &BTreeMap<(String, i32), Vec<i32>>,
    outcomes: &BTreeMap<(String, i32), crate::kafka::PartitionOutcome>,
    rollback: Option<&PlanFile>,
    file: &Path,
) -> Result<Report> {
    let mut rows = Vec::new();
    let mut t = Table::new(&["TOPIC", "PARTITION", "CURRENT", "TARGET", "RESULT"]);
    let mut failed = 0;
    for e in entries {
        let key = (e.topic.clone(), e.partition);
        let result = match outcomes.get(&key) {
            Some(Ok(())) if current.get(&key) == Some(&e.replicas) => "already there".to_string(),
            Some(Ok(())) => "started".to_string(),
            Some(Err((_, why))) => {
                failed += 1;
                format!("refused: {why}")
            }
            None => {
                failed += 1;
                "no answer from the broker".to_string()
            }
        };
        let cur = current.get(&key).cloned().unwrap_or_default();
        t.row(vec![e.topic.clone(), e.partition.to_string(), ids(&cur), ids(&e.replicas), result.clone()]);
        rows.push(serde_json::json!({"topic": e.topic, "partition": e.partition, "current": cur, "target": e.replicas, "result": result}));
    }
    let mut r = Report::new(serde_json::json!({ "partitions": rows, "rollback": rollback }));
    if let Some(rb) = rollback {
        r.line("Current partition replica assignment (to roll back, execute a file with this):");
        r.line(rb.to_json());
        r.line("");
    }
    r.table(t);
    r.line(format!(
        "{} move(s) started; `laminarctl partition reassign verify --file {}` says when they are done",
        entries.len() - failed,
        file.display()
    ));
    if failed > 0 {
        return Ok(r.fail(CtlError::failed(format!("{failed} move(s) refused (see RESULT)"))));
    }
    Ok(r)
}

/// One partition's state against the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveState {
    Complete,
    InProgress,
    /// Not moving and not on the target: cancelled, replaced, or never started.
    NotOnTarget,
}

pub fn move_state(current: &[i32], reassigning: bool, target: &[i32]) -> MoveState {
    if reassigning {
        MoveState::InProgress
    } else if current == target {
        MoveState::Complete
    } else {
        MoveState::NotOnTarget
    }
}

pub async fn verify(ctx: &Ctx, file: &Path) -> Result<Report> {
    let plan = PlanFile::read(file)?;
    let snap = snapshot::take(ctx, "partition reassign verify").await?;
    let mut t = Table::new(&["TOPIC", "PARTITION", "TARGET", "REPLICAS", "IN-SYNC", "STATE"]);
    let mut rows = Vec::new();
    let mut pending = 0;
    for e in &plan.partitions {
        let p = snap.parts.iter().find(|p| p.topic == e.topic && p.partition == e.partition).ok_or_else(|| {
            CtlError::not_found(format!(
                "{}-{} does not exist (deleted since the plan was made?)",
                e.topic, e.partition
            ))
        })?;
        let state = move_state(&p.replicas, p.reassigning(), &e.replicas);
        if state != MoveState::Complete {
            pending += 1;
        }
        let shown = match state {
            MoveState::Complete => "complete".to_string(),
            MoveState::InProgress => format!("in progress (adding {}, removing {})", ids(&p.adding), ids(&p.removing)),
            MoveState::NotOnTarget => "not moving and not on the target (cancelled or replaced?)".to_string(),
        };
        t.row(vec![
            e.topic.clone(),
            e.partition.to_string(),
            ids(&e.replicas),
            ids(&p.replicas),
            ids(&p.in_sync),
            shown,
        ]);
        rows.push(serde_json::json!({"topic": e.topic, "partition": e.partition, "target": e.replicas, "replicas": p.replicas, "in_sync": p.in_sync, "state": state}));
    }
    let mut r = Report::new(serde_json::json!({ "partitions": rows, "complete": pending == 0 }));
    r.table(t);
    if pending > 0 {
        let msg = format!("{pending} of {} move(s) not complete", plan.partitions.len());
        return Ok(r.fail(CtlError::condition(msg)));
    }
    r.line(format!("all {} move(s) complete", plan.partitions.len()));
    Ok(r)
}

pub async fn cancel(ctx: &Ctx, file: &Path) -> Result<Report> {
    let plan = PlanFile::read(file)?;
    let kafka = ctx.kafka().await?;
    let moves: Vec<(String, i32, Option<Vec<i32>>)> =
        plan.partitions.iter().map(|e| (e.topic.clone(), e.partition, None)).collect();
    let outcomes = kafka.alter_reassignments(&moves).await?;
    const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    let mut t = Table::new(&["TOPIC", "PARTITION", "RESULT"]);
    let mut rows = Vec::new();
    let mut failed = 0;
    for e in &plan.partitions {
        let result = match outcomes.get(&(e.topic.clone(), e.partition)) {
            Some(Ok(())) => "cancelled".to_string(),
            Some(Err((NO_REASSIGNMENT_IN_PROGRESS, _))) => "nothing in progress".to_string(),
            Some(Err((_, why))) => {
                failed += 1;
                format!("refused: {why}")
            }
            None => {
                failed += 1;
                "no answer from the broker".to_string()
            }
        };
        t.row(vec![e.topic.clone(), e.partition.to_string(), result.clone()]);
        rows.push(serde_json::json!({"topic": e.topic, "partition": e.partition, "result": result}));
    }
    let mut r = Report::new(&rows);
    r.table(t);
    if failed > 0 {
        return Ok(r.fail(CtlError::failed(format!("{failed} cancel(s) refused (see RESULT)"))));
    }
    Ok(r)
}

pub async fn list(ctx: &Ctx) -> Result<Report> {
    let snap = snapshot::take(ctx, "partition reassign list").await?;
    let moving: Vec<&Part> = snap.parts.iter().filter(|p| p.reassigning()).collect();
    let mut t = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING", "IN-SYNC"]);
    let mut rows = Vec::new();
    for p in &moving {
        t.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            ids(&p.replicas),
            ids(&p.adding),
            ids(&p.removing),
            ids(&p.in_sync),
        ]);
        rows.push(serde_json::json!({"topic": p.topic, "partition": p.partition, "replicas": p.replicas, "adding": p.adding, "removing": p.removing, "in_sync": p.in_sync}));
    }
    let mut r = Report::new(&rows);
    if moving.is_empty() {
        r.line("no reassignment in progress");
    } else {
        r.table(t);
    }
    Ok(r)
}

/// Moves off `node`: each partition whose target holds it gets, in its
/// place, the usable broker with the fewest replicas that does not hold
/// one already. Errors name partitions that cannot move.
pub fn plan_decommission(snap: &Snapshot, node: i32) -> std::result::Result<Vec<PlanEntry>, String> {
    let mut load: BTreeMap<i32, (usize, usize)> =
        snap.brokers.keys().filter(|&&b| b != node && snap.usable(b)).map(|&b| (b, (0, 0))).collect();
    for p in &snap.parts {
        for r in p.replicas.iter() {
            if let Some(l) = load.get_mut(r) {
                l.0 += 1;
                if p.leader == *r {
                    l.1 += 1;
                }
            }
        }
    }
    if load.is_empty() && snap.parts.iter().any(|p| p.target().contains(&node)) {
        return Err(format!(
            "broker {node} is the only live broker: there is nowhere to move its replicas (start another first)"
        ));
    }
    let mut out = Vec::new();
    let mut stuck = Vec::new();
    for p in &snap.parts {
        let target = p.target();
        let Some(pos) = target.iter().position(|&r| r == node) else { continue };
        let holding: Vec<i32> = p.replicas.clone();
        let next = load.iter().filter(|(b, _)| !holding.contains(b)).min_by_key(|(b, l)| (**l, **b)).map(|(b, _)| *b);
        match next {
            Some(b) => {
                load.get_mut(&b).expect("listed").0 += 1;
                let mut replicas = target.clone();
                replicas[pos] = b;
                out.push(PlanEntry { topic: p.topic.clone(), partition: p.partition, replicas, log_dirs: None });
            }
            None => stuck.push(p.name()),
        }
    }
    if !stuck.is_empty() {
        return Err(format!(
            "no broker can take the replica of broker {node} for {}: every other live broker holds one already \
             (add a broker, or lower the replication factor)",
            stuck.join(", ")
        ));
    }
    Ok(out)
}

pub async fn decommission(ctx: &Ctx, a: DecommissionArgs) -> Result<Report> {
    refuse_throttle(a.throttle)?;
    let node = a.node;
    let snap = snapshot::take(ctx, "broker decommission").await?;
    let holds = snap.parts.iter().any(|p| p.replicas.contains(&node));
    if !snap.brokers.contains_key(&node) && !holds {
        return Err(CtlError::not_found(format!(
            "broker {node} is neither registered nor holds any replica (brokers: {})",
            ids(&snap.brokers.keys().copied().collect::<Vec<_>>())
        )));
    }
    let entries = plan_decommission(&snap, node).map_err(CtlError::failed)?;
    let current: BTreeMap<(String, i32), Vec<i32>> =
        snap.parts.iter().map(|p| ((p.topic.clone(), p.partition), p.replicas.clone())).collect();
    if !a.mode.execute {
        let mut r =
            Report::new(serde_json::json!({ "node": node, "executed": false, "plan": PlanFile::new(entries.clone()) }));
        if entries.is_empty() {
            r.line(format!("broker {node} holds no replica to move"));
        } else {
            r.table(entries_table(&entries, &current));
            r.line("");
            r.line(format!("{} replica(s) to move off broker {node}", entries.len()));
        }
        r.line("dry run: nothing changed; run again with --execute to move them and wait until nothing is under-replicated");
        return Ok(r);
    }
    let kafka = ctx.kafka().await?;
    let mut submitted: Vec<PlanEntry> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(a.wait_timeout_ms);
    let mut last_progress = Instant::now();
    let mut pending = entries;
    let (remaining, under) = loop {
        if !pending.is_empty() {
            let moves: Vec<(String, i32, Option<Vec<i32>>)> =
                pending.iter().map(|e| (e.topic.clone(), e.partition, Some(e.replicas.clone()))).collect();
            let outcomes = kafka.alter_reassignments(&moves).await?;
            for e in pending.drain(..) {
                match outcomes.get(&(e.topic.clone(), e.partition)) {
                    Some(Ok(())) => submitted.push(e),
                    Some(Err((_, why))) => refused.push(format!("{}-{}: {why}", e.topic, e.partition)),
                    None => refused.push(format!("{}-{}: no answer", e.topic, e.partition)),
                }
            }
            if !refused.is_empty() {
                return Err(CtlError::failed(format!(
                    "the brokers refused to move off broker {node}: {} (moves already started go on; \
                     `partition reassign list` shows them)",
                    refused.join("; ")
                )));
            }
        }
        let now = snapshot::take(ctx, "broker decommission").await?;
        let remaining: Vec<String> =
            now.parts.iter().filter(|p| p.replicas.contains(&node)).map(|p| p.name()).collect();
        let under: Vec<String> = now.parts.iter().filter(|p| p.under_replicated()).map(|p| p.name()).collect();
        if remaining.is_empty() && under.is_empty() {
            break (remaining, under);
        }
        // Partitions placed on the broker since (a topic created meanwhile)
        // move too.
        let moving: BTreeSet<(String, i32)> = submitted.iter().map(|e| (e.topic.clone(), e.partition)).collect();
        let fresh: Vec<PlanEntry> = plan_decommission(&now, node)
            .map_err(CtlError::failed)?
            .into_iter()
            .filter(|e| !moving.contains(&(e.topic.clone(), e.partition)))
            .collect();
        pending = fresh;
        if Instant::now() >= deadline {
            break (remaining, under);
        }
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            last_progress = Instant::now();
            eprintln!(
                "laminarctl: waiting: {} partition(s) still on broker {node}, {} under-replicated",
                remaining.len(),
                under.len()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let done = remaining.is_empty() && under.is_empty();
    let mut r = Report::new(serde_json::json!({
        "node": node,
        "executed": true,
        "moved": PlanFile::new(submitted.clone()),
        "done": done,
        "still_on_broker": remaining,
        "under_replicated": under,
    }));
    if !submitted.is_empty() {
        r.table(entries_table(&submitted, &current));
        r.line("");
    }
    if done {
        r.line(format!(
            "broker {node} holds no replica and no partition is under-replicated: it can be stopped now \
             (SIGTERM: it hands its group coordinator slots to the others as it leaves)"
        ));
        return Ok(r);
    }
    r.line(format!(
        "still on broker {node}: {}",
        if remaining.is_empty() { "none".into() } else { remaining.join(", ") }
    ));
    r.line(format!("under-replicated: {}", if under.is_empty() { "none".into() } else { under.join(", ") }));
    Ok(r.fail(CtlError::new(
        Exit::Condition,
        format!(
            "broker {node} is not ready to stop after {} ms: the moves go on; run `broker decommission {node} --execute` again to keep waiting",
            a.wait_timeout_ms
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::snap;

    fn parts(s: &Snapshot) -> Vec<&Part> {
        s.parts.iter().collect()
    }

    #[test]
    fn plans_move_few_replicas_and_spread_them() {
        // Six partitions of RF 2 on brokers 1, 2; broker 3 joins.
        let p: Vec<(&[i32], &[u16], i32)> = (0..6)
            .map(|i| if i % 2 == 0 { (&[1, 2][..], &[0, 0][..], 1) } else { (&[2, 1][..], &[0, 0][..], 2) })
            .collect();
        let s = snap(&[(1, 1), (2, 1), (3, 1)], &p);
        let plan = plan_moves(&parts(&s), &[1, 2, 3]).unwrap();
        let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
        let mut moved = 0;
        let mut preferred: BTreeMap<i32, usize> = BTreeMap::new();
        for (e, part) in plan.iter().zip(&s.parts) {
            for r in &e.replicas {
                *per_broker.entry(*r).or_default() += 1;
            }
            moved += e.replicas.iter().filter(|r| !part.replicas.contains(r)).count();
            *preferred.entry(e.replicas[0]).or_default() += 1;
            assert_eq!(e.replicas.len(), 2);
        }
        assert_eq!(per_broker, [(1, 4), (2, 4), (3, 4)].into());
        assert_eq!(moved, 4, "only what broker 3 takes moves");
        assert_eq!(preferred, [(1, 2), (2, 2), (3, 2)].into());
        // Unchanged when already even.
        let again = plan_moves(&parts(&s), &[1, 2]).unwrap();
        assert!(again.iter().zip(&s.parts).all(|(e, p)| e.replicas == p.replicas));
        assert!(plan_moves(&parts(&s), &[1]).is_err(), "RF 2 on one broker");
    }

    #[test]
    fn decommission_replaces_the_broker_in_place_and_refuses_when_it_cannot() {
        let s = snap(
            &[(1, 1), (2, 1), (3, 1), (4, 1)],
            &[(&[4, 1], &[0, 0], 4), (&[1, 4], &[0, 0], 1), (&[2, 3], &[0, 0], 2), (&[4, 2], &[0, 0], 4)],
        );
        let plan = plan_decommission(&s, 4).unwrap();
        assert_eq!(plan.len(), 3);
        for e in &plan {
            assert!(!e.replicas.contains(&4));
            assert_eq!(e.replicas.len(), 2);
            let u: BTreeSet<i32> = e.replicas.iter().copied().collect();
            assert_eq!(u.len(), 2, "{e:?}");
        }
        // Broker 3 holds least: it takes the first.
        assert_eq!(plan[0].replicas, vec![3, 1]);
        let tight = snap(&[(1, 1), (2, 1)], &[(&[1, 2], &[0, 0], 1)]);
        assert!(plan_decommission(&tight, 2).unwrap_err().contains("t-0"));
        let alone = snap(&[(1, 1)], &[(&[1], &[0], 1)]);
        assert!(plan_decommission(&alone, 1).unwrap_err().contains("only live broker"));
    }

    #[test]
    fn plan_files_are_kafkas() {
        let text =
            r#"{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[1,2],"log_dirs":["any","any"]}]}"#;
        let f: PlanFile = serde_json::from_str(text).unwrap();
        assert!(f.validate().is_ok());
        assert_eq!(f.partitions[0].replicas, vec![1, 2]);
        let mut twice = f.clone();
        twice.partitions.push(twice.partitions[0].clone());
        assert!(twice.validate().unwrap_err().contains("twice"));
        let mut dup = f.clone();
        dup.partitions[0].replicas = vec![1, 1];
        assert!(dup.validate().is_err());
        let mut dirs = f.clone();
        dirs.partitions[0].log_dirs = Some(vec!["/data".into(), "any".into()]);
        assert!(dirs.validate().is_err());
        assert_eq!(
            PlanFile::new(vec![PlanEntry { topic: "a".into(), partition: 1, replicas: vec![3], log_dirs: None }])
                .to_json(),
            r#"{"version":1,"partitions":[{"topic":"a","partition":1,"replicas":[3]}]}"#
        );
        assert_eq!(move_state(&[1, 2], false, &[1, 2]), MoveState::Complete);
        assert_eq!(move_state(&[1, 2, 3], true, &[1, 2]), MoveState::InProgress);
        assert_eq!(move_state(&[2, 1], false, &[1, 2]), MoveState::NotOnTarget);
        assert!(refuse_throttle(Some(1000)).unwrap_err().message.contains("no replication throttle"));
    }
}

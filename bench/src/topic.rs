//! Run setup against the cluster: creating the topic, waiting for its leaders, looking up offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use laminar_client::{error_name, Client, NewTopic, OffsetSpec};

use crate::args::{RunArgs, StartFrom};

/// Kafka's TOPIC_ALREADY_EXISTS: an existing topic is used as it is.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// How long a new topic may take to get a leader for every partition.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// Creates the topic when asked, then waits until every partition has a leader that serves
/// (in a cluster a new leader answers NOT_LEADER_OR_FOLLOWER until its epoch is durable, and
/// the bench never retries a produce); returns the partition indexes.
pub async fn prepare(client: &Client, args: &RunArgs) -> Result<Vec<i32>, String> {
    if args.create_topic {
        let topic = NewTopic {
            name: args.topic.clone(),
            partitions: args.partitions,
            replication_factor: args.replication_factor,
            configs: Vec::new(),
        };
        let results = client.create_topics(&[topic], 30_000).await.map_err(|e| format!("CreateTopics failed: {e}"))?;
        for r in results {
            if r.error_code != 0 && r.error_code != TOPIC_ALREADY_EXISTS {
                let message = r.error_message.unwrap_or_default();
                return Err(format!("creating topic {}: {} {message}", r.name, error_name(r.error_code)));
            }
        }
    }
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let last_problem = match client.metadata(Some(&[args.topic.as_str()])).await {
            Ok(meta) => match meta.topic(&args.topic) {
                Some(t)
                    if t.error_code == 0 && !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) =>
                {
                    let partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
                    match leaders_serving(client, &args.topic, &partitions).await {
                        None => return Ok(partitions),
                        Some(problem) => problem,
                    }
                }
                Some(t) if t.error_code != 0 => error_name(t.error_code),
                Some(_) => "partitions without a leader".to_string(),
                None => "topic missing from metadata".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            let hint = if args.create_topic { "" } else { " (pass --create-topic to create it)" };
            return Err(format!("topic {} is not usable: {last_problem}{hint}", args.topic));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks every partition's leader for its log end; the first refusal, if any.
async fn leaders_serving(client: &Client, topic: &str, partitions: &[i32]) -> Option<String> {
    for &partition in partitions {
        match client.list_offset(topic, partition, OffsetSpec::Latest).await {
            Ok(r) if r.error_code == 0 => {}
            Ok(r) => return Some(format!("partition {partition}: {}", error_name(r.error_code))),
            Err(e) => return Some(format!("partition {partition}: {e}")),
        }
    }
    None
}

/// The earliest or latest offset of each partition.
pub async fn offsets(
    client: &Client,
    topic: &str,
    partitions: &[i32],
    spec: StartFrom,
) -> Result<HashMap<i32, i64>, String> {
    let spec = match spec {
        StartFrom::Earliest => OffsetSpec::Earliest,
        StartFrom::Latest => OffsetSpec::Latest,
    };
    let mut out = HashMap::new();
    for &partition in partitions {
        let r = client
            .list_offset(topic, partition, spec)
            .await
            .map_err(|e| format!("ListOffsets {topic}/{partition}: {e}"))?;
        if r.error_code != 0 {
            return Err(format!("ListOffsets {topic}/{partition}: {}", error_name(r.error_code)));
        }
        out.insert(partition, r.offset);
    }
    Ok(out)
}

/// Partitions dealt round-robin to `consumers` consumers (some get none when there are more
/// consumers than partitions).
pub fn assign(partitions: &[i32], consumers: usize) -> Vec<Vec<i32>> {
    let mut out = vec![Vec::new(); consumers];
    for (i, &p) in partitions.iter().enumerate() {
        out[i % consumers].push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_round_robin() {
        assert_eq!(assign(&[0, 1, 2, 3, 4], 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(assign(&[0], 3), vec![vec![0], vec![], vec![]]);
    }
}

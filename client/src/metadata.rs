//! Cluster metadata as the client uses it: brokers, and topics with their partition leaders.

use kafka_protocol::messages::MetadataResponse;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port) // IPv6 literal
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    pub error_code: i16,
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub error_code: i16,
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    /// -1 when the broker did not say.
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicMetadata>,
}

impl ClusterMetadata {
    pub fn from_response(response: MetadataResponse) -> Self {
        let brokers = response
            .brokers
            .into_iter()
            .map(|b| BrokerInfo {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            })
            .collect();
        let topics = response
            .topics
            .into_iter()
            .map(|t| {
                let mut partitions: Vec<PartitionMetadata> = t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionMetadata {
                        partition: p.partition_index,
                        error_code: p.error_code,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.into_iter().map(|n| n.0).collect(),
                        isr: p.isr_nodes.into_iter().map(|n| n.0).collect(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                TopicMetadata {
                    name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                    error_code: t.error_code,
                    is_internal: t.is_internal,
                    partitions,
                }
            })
            .collect();
        Self {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics,
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn broker(&self, node_id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }

    /// The leader of `topic`/`partition`, if known and present.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let p = self.topic(topic)?.partitions.iter().find(|p| p.partition == partition)?;
        (p.leader >= 0).then_some(p.leader)
    }

    /// Merges a newer answer: brokers and controller are replaced, topics are updated one by one
    /// (an answer about some topics says nothing about the others).
    pub fn merge(&mut self, newer: ClusterMetadata) {
        self.cluster_id = newer.cluster_id.or(self.cluster_id.take());
        self.controller_id = newer.controller_id;
        if !newer.brokers.is_empty() {
            self.brokers = newer.brokers;
        }
        for topic in newer.topics {
            match self.topics.iter_mut().find(|t| t.name == topic.name) {
                Some(existing) => *existing = topic,
                None => self.topics.push(topic),
            }
        }
    }
}

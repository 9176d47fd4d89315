//! laminar-bench: a Kafka-protocol load generator with latency histograms and delivery
//! verification. It speaks only the Kafka protocol (through `laminar-client`), so the same run
//! can target Laminar, Apache Kafka or Redpanda and the results can be compared.
//!
//! Modules, roughly in the order a run uses them:
//! - [`args`]: subcommands and knobs; [`run`]: one run from setup to report.
//! - [`topic`]: topic creation, leader wait, offset lookups, partition assignment.
//! - [`produce`] / [`consume`]: the producer and consumer tasks.
//! - [`record_format`]: the 24-byte header every record value starts with.
//! - [`keys`], [`zipf`], [`rng`], [`rate`]: keys and their partitions, skew, randomness, pacing.
//! - [`stats`], [`window`], [`clock`]: counters, HdrHistograms, the measured window, timestamps.
//! - [`verify`], [`seq_set`]: lost / duplicated / reordered accounting.
//! - [`report`], [`machine`], [`progress`]: the JSON result, machine facts and CPU use, the live line.
//! - [`compare`], [`svg`]: two results side by side, latency curves as SVG.

pub mod args;
pub mod clock;
pub mod compare;
pub mod consume;
pub mod errors;
pub mod keys;
pub mod machine;
pub mod produce;
pub mod progress;
pub mod rate;
pub mod record_format;
pub mod report;
pub mod rng;
pub mod run;
pub mod seq_set;
pub mod stats;
pub mod svg;
pub mod topic;
pub mod verify;
pub mod window;
pub mod zipf;

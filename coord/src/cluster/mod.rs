//! The cluster's shared state as stored: where each record lives (`keys`),
//! what it holds (`records`), and the picture a broker or the ops tool builds
//! from watching it (`view`). Brokers and `laminarctl` both use these, so the
//! layout has one implementation.

pub mod keys;
pub mod records;
pub mod view;

pub use keys::{group_slot, Keys, MetaKey, FORMAT_VERSION, GROUP_SLOTS};
pub use records::{
    BrokerRecord, ControllerRecord, CoordinatorRecord, FormatRecord, IsrMember, ListenerRecord, PartitionRecord,
    ScramCredentialRecord, TopicRecord,
};
pub use view::{ClusterView, Stored, TopicView};

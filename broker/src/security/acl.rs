//! Kafka's ACL model and its matching rules (Kafka's `AclAuthorizer` /
//! `StandardAuthorizer`): an ACL binds a resource pattern (type, name,
//! LITERAL or PREFIXED) to an entry (principal, host, operation, ALLOW or
//! DENY). A request is allowed when the principal is a super user, or no
//! DENY matches and an ALLOW does; a resource no ACL names at all is allowed
//! only with `allow.everyone.if.no.acl.found`. `User:*`, host `*` and the
//! LITERAL name `*` match everything; READ, WRITE, DELETE and ALTER imply
//! DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS, ALL implies every
//! operation.

use serde::{Deserialize, Serialize};

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
pub const WILDCARD: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(c: i8) -> Option<ResourceType> {
        Some(match c {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn from_code(c: i8) -> Option<PatternType> {
        match c {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
        }
    }

    pub fn from_code(c: i8) -> Option<Operation> {
        Some(match c {
            2 => Operation::All,
            3 => Operation::Read,
            4 => Operation::Write,
            5 => Operation::Create,
            6 => Operation::Delete,
            7 => Operation::Alter,
            8 => Operation::Describe,
            9 => Operation::ClusterAction,
            10 => Operation::DescribeConfigs,
            11 => Operation::AlterConfigs,
            12 => Operation::IdempotentWrite,
            _ => return None,
        })
    }

    /// Whether an ALLOW for `self` grants `wanted`.
    fn grants(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(self, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    pub fn from_code(c: i8) -> Option<Permission> {
        match c {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// One ACL binding, as stored (`<P>/acls/...`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:<name>` or `User:*`.
    pub principal: String,
    /// An IP address or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl Acl {
    /// Whether this ACL's pattern covers the resource.
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == host || self.host == WILDCARD)
    }
}

/// What DescribeAcls and DeleteAcls match with: `None` fields match anything
/// (Kafka's ANY); `pattern: Match` matches the ACLs that would apply to a
/// resource name (literal equal or `*`, or a prefix of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PatternFilter {
    #[default]
    Any,
    Match,
    Exactly(PatternType),
}

impl AclFilter {
    pub fn matches(&self, acl: &Acl) -> bool {
        let name_ok = match (&self.resource_name, self.pattern) {
            (None, _) => true,
            (Some(n), PatternFilter::Match) => match acl.pattern_type {
                PatternType::Literal => acl.resource_name == *n || acl.resource_name == WILDCARD,
                PatternType::Prefixed => n.starts_with(&acl.resource_name),
            },
            (Some(n), _) => acl.resource_name == *n,
        };
        let pattern_ok = match self.pattern {
            PatternFilter::Any | PatternFilter::Match => true,
            PatternFilter::Exactly(p) => acl.pattern_type == p,
        };
        self.resource_type.is_none_or(|t| t == acl.resource_type)
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// Every ACL, and the authorizer's settings.
#[derive(Debug, Clone, Default)]
pub struct AclSet {
    pub acls: Vec<Acl>,
}

/// The authorizer's settings (`--super-users`, `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `User:<name>` principals allowed everything.
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

impl AclSet {
    /// Whether `principal` (`User:<name>`) from `host` may do `op` on the resource.
    pub fn authorize(
        &self,
        policy: &Policy,
        principal: &str,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if policy.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let mut covered = false;
        let mut allowed = false;
        for acl in self.acls.iter().filter(|a| a.covers(resource_type, name)) {
            covered = true;
            if !acl.applies_to(principal, host) {
                continue;
            }
            match acl.permission {
                // A DENY of ALL or of the operation itself wins.
                Permission::Deny if acl.operation == op || acl.operation == Operation::All => return false,
                Permission::Deny => {}
                Permission::Allow => allowed |= acl.operation.grants(op),
            }
        }
        if !covered {
            return policy.allow_if_no_acl;
        }
        allowed
    }

    /// Whether some ALLOW of `op` on some resource of `resource_type`
    /// applies to the principal (Kafka's check for idempotent producers:
    /// WRITE on any topic).
    pub fn allows_any(&self, principal: &str, host: &str, op: Operation, resource_type: ResourceType) -> bool {
        self.acls.iter().any(|a| {
            a.resource_type == resource_type
                && a.permission == Permission::Allow
                && a.applies_to(principal, host)
                && a.operation.grants(op)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(t: ResourceType, name: &str, p: PatternType, who: &str, op: Operation, perm: Permission) -> Acl {
        Acl {
            resource_type: t,
            resource_name: name.into(),
            pattern_type: p,
            principal: who.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn literal_prefixed_and_wildcards() {
        let set = AclSet {
            acls: vec![
                acl(Topic, "orders", Literal, "User:alice", Write, Allow),
                acl(Topic, "logs.", Prefixed, "User:bob", Read, Allow),
                acl(Topic, "*", Literal, "User:carol", Describe, Allow),
                acl(Group, "g", Literal, "User:*", Read, Allow),
            ],
        };
        let p = Policy::default();
        let ok = |who: &str, op, t, name: &str| set.authorize(&p, who, "10.0.0.1", op, t, name);
        assert!(ok("User:alice", Write, Topic, "orders"));
        assert!(ok("User:alice", Describe, Topic, "orders"), "WRITE implies DESCRIBE");
        assert!(!ok("User:alice", Read, Topic, "orders"));
        assert!(!ok("User:alice", Write, Topic, "orders2"), "literal is exact");
        assert!(ok("User:bob", Read, Topic, "logs.app"));
        assert!(!ok("User:bob", Read, Topic, "log"), "prefix must be whole");
        assert!(ok("User:carol", Describe, Topic, "anything"));
        assert!(!ok("User:carol", Read, Topic, "anything"));
        assert!(ok("User:zed", Read, Group, "g"), "User:* matches everyone");
        assert!(!ok("User:zed", Read, Group, "h"));
    }

    #[test]
    fn deny_wins_and_no_acl_follows_the_policy() {
        let mut deny = acl(Topic, "t", Literal, "User:alice", Read, Deny);
        deny.host = "10.0.0.9".into();
        let set = AclSet {
            acls: vec![
                acl(Topic, "t", Literal, "User:alice", All, Allow),
                deny,
                acl(Topic, "s", Prefixed, "User:*", All, Deny),
            ],
        };
        let p = Policy::default();
        assert!(set.authorize(&p, "User:alice", "10.0.0.1", Read, Topic, "t"));
        assert!(!set.authorize(&p, "User:alice", "10.0.0.9", Read, Topic, "t"), "DENY from that host");
        assert!(set.authorize(&p, "User:alice", "10.0.0.9", Write, Topic, "t"), "only READ is denied");
        assert!(!set.authorize(&p, "User:alice", "10.0.0.1", Read, Topic, "secret"));
        // No ACL names the resource.
        assert!(!set.authorize(&p, "User:alice", "h", Read, Topic, "u"));
        let open = Policy { allow_if_no_acl: true, ..Default::default() };
        assert!(set.authorize(&open, "User:alice", "h", Read, Topic, "u"));
        // Super users pass even a DENY.
        let supers = Policy { super_users: vec!["User:admin".into()], ..Default::default() };
        assert!(set.authorize(&supers, "User:admin", "h", Read, Topic, "secret"));
    }

    #[test]
    fn implied_operations() {
        assert!(AlterConfigs.grants(DescribeConfigs));
        assert!(!DescribeConfigs.grants(AlterConfigs));
        assert!(All.grants(IdempotentWrite));
        assert!(Delete.grants(Describe) && Alter.grants(Describe) && Read.grants(Describe));
        assert!(!Describe.grants(Read));
        for c in 2..=12 {
            assert_eq!(Operation::from_code(c).unwrap().code(), c);
        }
    }

    #[test]
    fn filters() {
        let a = acl(Topic, "logs.", Prefixed, "User:bob", Read, Allow);
        assert!(AclFilter::default().matches(&a));
        let f =
            AclFilter { resource_name: Some("logs.app".into()), pattern: PatternFilter::Match, ..Default::default() };
        assert!(f.matches(&a));
        let f = AclFilter { resource_name: Some("logs.app".into()), ..Default::default() };
        assert!(!f.matches(&a));
        let f = AclFilter { pattern: PatternFilter::Exactly(Literal), ..Default::default() };
        assert!(!f.matches(&a));
        let f = AclFilter { principal: Some("User:bob".into()), operation: Some(Read), ..Default::default() };
        assert!(f.matches(&a));
        let f = AclFilter { permission: Some(Deny), ..Default::default() };
        assert!(!f.matches(&a));
    }
}

//! Hidden failure points for end-to-end tests, set through the environment
//! variable `LAMINAR_FAILPOINTS` (comma-separated `name=value`) and read once
//! at start. When it is unset each check is one load of a static holding
//! `None`. An unknown name or a bad value stops the broker at start: a typo
//! must not make a test pass by testing nothing.
//!
//! | name | effect |
//! |---|---|
//! | `panic_on_produce_to=<topic>` | the shard owning a partition of `<topic>` panics when asked to append to it |
//! | `enospc_after_bytes=<n>` | every partition log of this broker writes to one simulated disk of `n` bytes (`laminar_engine::DiskBudget`): writes past it fail with ENOSPC; deleting data (DeleteRecords, retention, DeleteTopics) frees room |

use std::sync::{Arc, OnceLock};

use laminar_engine::DiskBudget;

pub const ENV: &str = "LAMINAR_FAILPOINTS";

#[derive(Debug, Default)]
pub struct Failpoints {
    pub panic_on_produce_to: Option<String>,
    pub disk: Option<Arc<DiskBudget>>,
}

static FAILPOINTS: OnceLock<Option<Failpoints>> = OnceLock::new();

/// Reads `LAMINAR_FAILPOINTS` (once; later calls change nothing).
pub fn init_from_env() -> anyhow::Result<()> {
    let parsed = match std::env::var(ENV) {
        Ok(spec) if !spec.trim().is_empty() => Some(parse(&spec)?),
        _ => None,
    };
    if let Some(f) = &parsed {
        tracing::warn!(failpoints = ?f, "test failure points are active ({ENV})");
    }
    let _ = FAILPOINTS.set(parsed);
    Ok(())
}

/// The active failure points, if any.
#[inline]
pub fn get() -> Option<&'static Failpoints> {
    FAILPOINTS.get().and_then(Option::as_ref)
}

/// Panics if a failure point says an append to `topic` must.
#[inline]
pub fn before_produce(topic: &str) {
    if let Some(f) = get() {
        if f.panic_on_produce_to.as_deref() == Some(topic) {
            panic!("failpoint panic_on_produce_to={topic}");
        }
    }
}

pub fn parse(spec: &str) -> anyhow::Result<Failpoints> {
    let mut f = Failpoints::default();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once('=').ok_or_else(|| anyhow::anyhow!("{ENV}: '{item}' is not name=value"))?;
        match name.trim() {
            "panic_on_produce_to" => f.panic_on_produce_to = Some(value.trim().to_string()),
            "enospc_after_bytes" => {
                let n: u64 = value.trim().parse().map_err(|e| anyhow::anyhow!("{ENV}: enospc_after_bytes: {e}"))?;
                f.disk = Some(Arc::new(DiskBudget::new(n)));
            }
            other => anyhow::bail!("{ENV}: unknown failure point '{other}'"),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_points_and_refuses_unknown_ones() {
        let f = parse("panic_on_produce_to=boom, enospc_after_bytes=4096").unwrap();
        assert_eq!(f.panic_on_produce_to.as_deref(), Some("boom"));
        assert_eq!(f.disk.unwrap().capacity_bytes(), 4096);
        assert!(parse("panic_on_produce=boom").is_err());
        assert!(parse("enospc_after_bytes=lots").is_err());
        assert!(parse("enospc_after_bytes").is_err());
    }
}

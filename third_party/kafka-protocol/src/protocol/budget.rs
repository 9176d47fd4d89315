//! Laminar patch: a per-thread memory budget for decoding.
//!
//! Bounding an array's claimed count by the bytes left (see `types::Array`)
//! still lets a valid frame build elements far larger in memory than on the
//! wire: a Produce topic is 3 bytes on the wire at v9+ and about 100 bytes in
//! memory, and an unknown tagged field of 2 bytes costs a B-tree node. A
//! server sets a budget around decoding one request; every array decode
//! charges `count × size_of::<T>()` before reserving, and every unknown
//! tagged field charges its map entry. Going over is a decode error.
//!
//! Without a budget on the thread (the default) nothing is limited, so the
//! crate decodes as before for callers that do not opt in (clients decoding
//! responses).

use std::cell::Cell;
use std::marker::PhantomData;

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy)]
struct State {
    limit_bytes: usize,
    charged_bytes: usize,
}

thread_local! {
    // `const`: no lazy initialisation and no destructor, so reading it never
    // allocates (a test's counting allocator may run around it).
    static BUDGET: Cell<Option<State>> = const { Cell::new(None) };
}

/// A decode memory budget in force on this thread until the guard is
/// dropped. Nested budgets are independent while in force; when an inner one
/// ends, what it charged is added to the outer one.
#[must_use = "the budget ends when the guard is dropped"]
#[derive(Debug)]
pub struct DecodeBudget {
    outer: Option<State>,
    // The budget is the current thread's: the guard must not move threads.
    _not_send: PhantomData<*const ()>,
}

impl DecodeBudget {
    /// Starts a budget of `limit_bytes` on this thread.
    pub fn enter(limit_bytes: usize) -> Self {
        let outer = BUDGET.with(|b| b.replace(Some(State { limit_bytes, charged_bytes: 0 })));
        DecodeBudget { outer, _not_send: PhantomData }
    }

    /// Bytes charged against this budget so far.
    pub fn charged_bytes(&self) -> usize {
        BUDGET.with(|b| b.get().map_or(0, |s| s.charged_bytes))
    }
}

impl Drop for DecodeBudget {
    fn drop(&mut self) {
        let inner = BUDGET.with(|b| b.get()).map_or(0, |s| s.charged_bytes);
        let outer = self.outer.map(|mut s| {
            s.charged_bytes = s.charged_bytes.saturating_add(inner);
            s
        });
        BUDGET.with(|b| b.set(outer));
    }
}

/// Runs `f` (a decode) under a budget of `limit_bytes` on this thread.
pub fn with_decode_budget<R>(limit_bytes: usize, f: impl FnOnce() -> R) -> R {
    let _budget = DecodeBudget::enter(limit_bytes);
    f()
}

/// Charges `bytes` about to be allocated for `what` (called only to build
/// the error message); an error if that goes over the budget in force.
pub fn charge(bytes: usize, what: impl FnOnce() -> String) -> Result<()> {
    BUDGET.with(|b| {
        let Some(mut s) = b.get() else {
            return Ok(());
        };
        let charged = s.charged_bytes.saturating_add(bytes);
        if charged > s.limit_bytes {
            bail!(
                "decode memory budget exceeded: {} needs {bytes} bytes, {} of this request's {} bytes are already used",
                what(),
                s.charged_bytes,
                s.limit_bytes
            );
        }
        s.charged_bytes = charged;
        b.set(Some(s));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_accumulate_until_the_limit() {
        let budget = DecodeBudget::enter(100);
        charge(60, || "a".into()).unwrap();
        assert_eq!(budget.charged_bytes(), 60);
        let e = charge(41, || "an array of 41 bytes".into()).unwrap_err().to_string();
        assert!(e.contains("an array of 41 bytes"), "{e}");
        charge(40, || "b".into()).unwrap();
        drop(budget);
        charge(usize::MAX, || "no budget".into()).unwrap();
    }

    #[test]
    fn an_inner_budget_adds_to_the_outer() {
        let outer = DecodeBudget::enter(100);
        with_decode_budget(10, || charge(8, || "x".into()).unwrap());
        assert_eq!(outer.charged_bytes(), 8);
    }
}

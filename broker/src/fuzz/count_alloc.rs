//! A counting global allocator for the broker's unit-test binary: per-thread
//! live and peak byte counters, so tests running in parallel on the harness's
//! threads do not disturb each other's measurements.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

thread_local! {
    // `const`, no destructor: touching them never allocates, so the
    // allocator can use them. Signed: a thread may free what another
    // allocated, or what it allocated before a measurement began.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE_BYTES.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK_BYTES.try_with(|peak| {
            if now > peak.get() {
                peak.set(now)
            }
        });
    });
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A moving realloc holds both blocks for a moment; count the new
            // one in full first so the peak sees that moment.
            note(new_size as isize);
            note(-(layout.size() as isize));
        }
        p
    }
}

/// Runs `f` and returns its result with the most bytes this thread had
/// allocated at once, counted from the call (memory freed inside `f` that
/// was allocated before it does not lower the count below zero).
pub fn peak_bytes<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LIVE_BYTES.with(|l| l.set(0));
    PEAK_BYTES.with(|p| p.set(0));
    let r = f();
    let peak = PEAK_BYTES.with(|p| p.get());
    (r, peak.max(0) as usize)
}

#[test]
fn counts_this_threads_allocations_only() {
    let (v, peak) = peak_bytes(|| {
        let other = std::thread::spawn(|| vec![1u8; 8 << 20]);
        let mine = vec![0u64; 1000];
        drop(other.join().unwrap());
        mine.len()
    });
    assert_eq!(v, 1000);
    assert!((8000..8000 + 4096).contains(&peak), "peak {peak}");
}

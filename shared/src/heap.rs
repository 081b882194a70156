//! Heap accounting for tools and tests: a global allocator that counts live bytes
//! and their peak, so that a harness can tell the most a piece of work held at once.
//! Installed by the programs that measure (`facesvg-render time`, the fuzz harness,
//! the hostile-input tests), never by the functions.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: facesvg::heap::Counting = facesvg::heap::Counting;
//! let mark = facesvg::heap::mark();
//! work();
//! let most = facesvg::heap::peak_since(mark);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The counting allocator (the system allocator underneath).
pub struct Counting;

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        // The old and the new block may both be live while the bytes are copied:
        // the peak counts them together.
        PEAK.fetch_max(LIVE.load(Relaxed) + new, Relaxed);
        let q = unsafe { System.realloc(p, layout, new) };
        if !q.is_null() {
            if new >= layout.size() {
                LIVE.fetch_add(new - layout.size(), Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new, Relaxed);
            }
        }
        q
    }
}

/// The live bytes now, with the peak reset to them: the start of a measurement.
pub fn mark() -> usize {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    live
}

/// The most bytes held at once since `mark`, beyond what was live then.
pub fn peak_since(mark: usize) -> usize {
    PEAK.load(Relaxed).saturating_sub(mark)
}

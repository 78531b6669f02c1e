//! Buffers recycled across requests.
//!
//! Each request needs a few buffers for a few microseconds: the client's bytes, the app's, the
//! rewritten heads. Allocating and freeing them per request cost ~15% of the fast path's
//! instructions, and worse, glibc gave the freed top of the heap back to the kernel and took
//! it again a moment later: one `brk` per six requests, each followed by page faults. Holding
//! them per connection instead would cost 16 KiB per idle keep-alive connection (an ingress
//! controller keeps hundreds). So buffers live in a small per-thread free list: a connection
//! takes one when a request arrives and gives it back when it goes idle.

use std::cell::RefCell;

/// Capacity of a fresh buffer: a request or response head and a first piece of body.
pub const SIZE: usize = 16 * 1024;

/// Buffers kept per thread; beyond that they are freed. Enough for the requests one thread
/// has in flight at once in a sidecar.
const KEEP: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with at least [`SIZE`] bytes of capacity.
pub fn take() -> Vec<u8> {
    FREE.with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(SIZE))
}

/// Gives a buffer back. One that grew for an unusually large head is freed, not kept.
pub fn give(mut buf: Vec<u8>) {
    if !(SIZE..=4 * SIZE).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    FREE.with_borrow_mut(|free| {
        if free.len() < KEEP {
            free.push(buf);
        }
    });
}

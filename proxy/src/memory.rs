//! Gives the memory a burst of connections used back to the system once the burst is over.
//!
//! Each request in flight holds a few 16 KiB buffers (see `data_plane::fast::buffers`), so 2000
//! concurrent connections briefly need tens of MiB. glibc's malloc keeps what is freed in its
//! heap: the top of the heap is trimmed, but the freed chunks below long-lived allocations
//! are not, and RSS stayed at the burst's high-water mark after every connection had closed
//! (measured: 16 MiB idle, then 34, 50, 66 MiB after three rounds of 2000 connections).
//! `malloc_trim(0)` releases those free pages (madvise) without moving anything, so it is
//! called once the number of open connections has fallen well below its peak: rare, and a few
//! milliseconds when it runs.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::drain::Drain;

/// A burst worth trimming after: this many more connections were open at the peak than now.
const BURST: usize = 256;

/// How often the counts are looked at. A trim comes at most this long after a burst ended.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Trims the heap after each burst of connections: `high_water` is the data plane's peak of
/// open connections since the last look (the accept loop raises it, this task resets it).
pub async fn trim_after_bursts(drain: Drain, high_water: Arc<AtomicUsize>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak = 0usize;
    loop {
        tick.tick().await;
        let now = drain.open_connections();
        peak = peak.max(high_water.swap(now, Ordering::Relaxed)).max(now);
        if peak - now >= BURST && now <= peak / 4 {
            trim();
            tracing::debug!(
                peak,
                open = now,
                "heap trimmed after a burst of connections"
            );
            peak = now;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and only returns free heap pages to the kernel;
    // it is thread-safe (it takes the arena locks itself).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

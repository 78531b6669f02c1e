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

use std::time::Duration;

use tokio::sync::watch;

/// A burst worth trimming after: this many more connections were open at the peak than now.
const BURST: usize = 256;

/// How long after the connections fell away the heap is trimmed: the rest of the burst's
/// connections close in the meantime, and a trim is not repeated for one burst.
const SETTLE: Duration = Duration::from_secs(1);

/// Follows the number of open client connections and trims the heap after each burst.
pub async fn trim_after_bursts(mut open: watch::Receiver<usize>) {
    let mut peak = 0usize;
    while open.changed().await.is_ok() {
        let now = *open.borrow_and_update();
        peak = peak.max(now);
        if peak - now >= BURST && now <= peak / 4 {
            tokio::time::sleep(SETTLE).await;
            trim();
            let now = *open.borrow_and_update();
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

//! Addresses to listen on: loopback only, never anything else, and free at the moment of asking.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU8, Ordering};

/// A port nothing listens on right now at `ip`, found by binding port 0 and letting go.
///
/// The port may be taken again before the caller binds it; on loopback, with the kernel handing
/// out ports round-robin, that does not happen in practice, and it keeps the binaries under test
/// free of any "listen on port 0 and tell me which" protocol.
pub fn free_addr_on(ip: Ipv4Addr) -> SocketAddr {
    let probe = TcpListener::bind((ip, 0))
        .unwrap_or_else(|e| panic!("binding a probe socket on {ip}: {e}"));
    probe.local_addr().expect("probe socket address")
}

/// A loopback IP this test process has handed out to no one else: `127.<pid-derived>.<n>.1`.
///
/// Each "pod" of a test gets its own IP (as it would in a cluster), so concurrent tests in one
/// process, and other suites running on the machine at the same time, do not share an address.
/// The whole of 127.0.0.0/8 is loopback on Linux, so no setup is needed.
pub fn own_loopback_ip() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(127, 100 + (std::process::id() % 100) as u8, n, 1)
}

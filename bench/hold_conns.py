#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections, sends one request on each, then holds them idle.

Why: a sidecar in front of an ingress controller's or router's keep-alive pool spends most of
its life holding idle connections; their memory cost is one of the figures the benchmark
reports (RSS with 1000 idle connections).

Usage: hold_conns.py HOST PORT N STATE_FILE

Once every connection has been answered and is idle, writes "held N" to STATE_FILE. On SIGTERM
it counts the connections the server has not closed and writes "still_open M" to
STATE_FILE.end, then exits. Python standard library only; loopback use only.
"""

import resource
import signal
import socket
import sys


def read_response(sock):
    """Reads one response with a Content-Length body; returns False if the server closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    keep = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return keep


def still_open(socks):
    """A socket is still open when a non-blocking read finds nothing to read (no EOF)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1):
                n += 1  # unexpected bytes, but the connection is open
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: hold_conns.py HOST PORT N STATE_FILE")
    host, port, n, state = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if not host.startswith("127."):
        sys.exit("hold_conns.py: loopback addresses only (127.0.0.0/8), got " + host)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit(f"hold_conns.py: open-file limit {hard} is below the {want} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(request)
        if not read_response(s):
            sys.exit(f"hold_conns.py: connection {i} was not kept alive by {host}:{port}")
        socks.append(s)

    def finish(_signum, _frame):
        with open(state + ".end", "w") as f:
            f.write(f"still_open {still_open(socks)}\n")
        sys.exit(0)

    signal.signal(signal.SIGTERM, finish)
    with open(state, "w") as f:
        f.write(f"held {len(socks)}\n")
    while True:
        signal.pause()


if __name__ == "__main__":
    main()

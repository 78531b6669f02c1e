//! The `router` front: a real HAProxy, as the OpenShift router runs it.
//!
//! The router keeps a fixed pool of server slots (`server-template`) and points them at pods
//! through the runtime API (`set server ... addr ... port ...`, `state ready` / `state maint`)
//! instead of reloading for every endpoint change: a reload would start a new process and
//! leave the old one draining, which is exactly the churn the dynamic API exists to avoid.
//! HAProxy keeps idle server connections for reuse (`http-reuse safe`, the default) and
//! retries a failed connect (`retries 3`, `option redispatch`, as the router's template does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::cluster::Endpoint;
use crate::procs;
use crate::scale::Scale;

/// Server slots in the backend: more than the pods that can be ready at once in any scenario.
const SLOTS: usize = 32;

pub struct Haproxy {
    pub addr: SocketAddr,
    socket: PathBuf,
    pid: u32,
    child: Mutex<Child>,
    /// Slot number (1-based) -> pod currently in it.
    slots: Mutex<BTreeMap<usize, String>>,
}

impl Haproxy {
    pub async fn start(addr: SocketAddr, run_dir: &Path, scale: Scale) -> Result<Haproxy> {
        let program = super::find_program("haproxy")
            .ok_or_else(|| anyhow!("haproxy not found: apt-get install haproxy"))?;
        let dir = run_dir.join("haproxy");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let socket = dir.join("admin.sock");
        let _ = std::fs::remove_file(&socket);
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, render(&dir, &socket, addr, scale)).context("writing haproxy.cfg")?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let mut cmd = Command::new(&program);
        cmd.arg("-f").arg(&cfg).arg("-db");
        let (child, pid) = procs::start_daemon(cmd, log, "haproxy")?;
        let h = Haproxy {
            addr,
            socket,
            pid,
            child: Mutex::new(child),
            slots: Mutex::new(BTreeMap::new()),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if super::wait_listening(addr, Duration::from_millis(200)).await
                && h.command("show info").await.is_ok()
            {
                return Ok(h);
            }
            if tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default();
                h.stop().await;
                bail!("haproxy did not start on {addr}; its log says:\n{log}");
            }
        }
    }

    /// One runtime API command (several may be joined with `;`); HAProxy answers and closes.
    async fn command(&self, cmd: &str) -> Result<String> {
        let mut s = UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to {}", self.socket.display()))?;
        s.write_all(format!("{cmd}\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    /// Points slots at the new endpoint set: removed pods' slots go to maint, new pods take
    /// free slots.
    pub async fn apply(&self, endpoints: &[Endpoint]) -> Result<()> {
        let mut slots = self.slots.lock().await;
        let mut cmds = Vec::new();
        let gone: Vec<usize> = slots
            .iter()
            .filter(|(_, pod)| !endpoints.iter().any(|e| &e.pod == *pod))
            .map(|(s, _)| *s)
            .collect();
        for s in gone {
            slots.remove(&s);
            cmds.push(format!("set server pods/pod{s} state maint"));
        }
        for e in endpoints {
            if slots.values().any(|p| p == &e.pod) {
                continue;
            }
            let free = (1..=SLOTS)
                .find(|s| !slots.contains_key(s))
                .ok_or_else(|| anyhow!("all {SLOTS} router slots are taken"))?;
            slots.insert(free, e.pod.clone());
            cmds.push(format!(
                "set server pods/pod{free} addr {} port {}",
                e.addr.ip(),
                e.addr.port()
            ));
            cmds.push(format!("set server pods/pod{free} state ready"));
        }
        if cmds.is_empty() {
            return Ok(());
        }
        let out = self.command(&cmds.join(";")).await?;
        let complaints: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("IP changed")
                    && !l.starts_with("no need to change")
                    && !l.contains("port changed")
            })
            .collect();
        if !complaints.is_empty() {
            bail!("haproxy runtime API: {}", complaints.join(" | "));
        }
        Ok(())
    }

    pub async fn stop(&self) {
        // SIGUSR1: soft stop, the workers finish what they serve.
        procs::stop_daemon(self.pid, &mut *self.child.lock().await, libc::SIGUSR1).await;
    }
}

fn render(dir: &Path, socket: &Path, addr: SocketAddr, scale: Scale) -> String {
    let d = |s: u64| {
        format!(
            "{}ms",
            scale.apply(Duration::from_secs(s)).as_millis().max(1)
        )
    };
    format!(
        r#"# Written by the lameduck lab; servers are set through the runtime API.
global
    master-worker
    pidfile {dir}/haproxy.pid
    stats socket {socket} mode 600 level admin
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    option redispatch
    retries 3
    timeout connect {connect}
    timeout client {rw}
    timeout server {rw}
    timeout http-request {connect}
    timeout http-keep-alive {rw}

frontend fe
    bind {addr}
    default_backend pods

backend pods
    balance roundrobin
    server-template pod 1-{SLOTS} 127.0.0.1:1 disabled
"#,
        dir = dir.display(),
        socket = socket.display(),
        connect = d(5),
        rw = d(60),
    )
}

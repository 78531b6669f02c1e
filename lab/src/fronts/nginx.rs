//! The `ingress` front: a real nginx, driven the way an ingress controller drives it.
//!
//! The controller (ingress-nginx, or any template-based one) renders an `upstream` block from
//! the endpoints and reloads nginx on each change; nginx keeps a keep-alive pool to the pods
//! and retries a failed request on the next upstream for errors and timeouts, except for
//! non-idempotent requests (POST) once they were sent: the lab's POSTs show what nginx cannot
//! hide. Everything lives under the run's output directory (prefix, config, pid, logs, temp
//! paths), so nothing needs root-owned paths.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::cluster::Endpoint;
use crate::procs;
use crate::scale::Scale;

pub struct Nginx {
    pub addr: SocketAddr,
    dir: PathBuf,
    scale: Scale,
    pid: u32,
    child: Mutex<Child>,
    /// Bumped on every reload; nginx answers it on `/__lab/generation`, so the lab knows when
    /// the new workers (and so the new upstream) are live.
    generation: std::sync::atomic::AtomicU64,
}

impl Nginx {
    pub async fn start(addr: SocketAddr, run_dir: &Path, scale: Scale) -> Result<Nginx> {
        let program = super::find_program("nginx")
            .ok_or_else(|| anyhow!("nginx not found: apt-get install nginx-light"))?;
        let dir = run_dir.join("nginx");
        for sub in ["", "tmp", "logs"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let conf = render(&dir, addr, scale, &[], 0);
        std::fs::write(dir.join("nginx.conf"), conf).context("writing nginx.conf")?;
        let log = std::fs::File::create(dir.join("logs/stderr.log"))?;
        let mut cmd = Command::new(&program);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("logs/error.log"));
        let (child, pid) = procs::start_daemon(cmd, log, "nginx")?;
        let nginx = Nginx {
            addr,
            dir,
            scale,
            pid,
            child: Mutex::new(child),
            generation: 0.into(),
        };
        if !super::wait_listening(addr, Duration::from_secs(10)).await {
            let log = std::fs::read_to_string(nginx.dir.join("logs/error.log")).unwrap_or_default();
            nginx.stop().await;
            bail!("nginx did not start listening on {addr}; its error log says:\n{log}");
        }
        Ok(nginx)
    }

    /// Rewrites the upstream and reloads (SIGHUP): new workers get the new upstream, old
    /// workers finish their requests and close their keep-alive connections.
    ///
    /// Returns once a new connection is served by the new configuration: a reload is
    /// asynchronous, and counting requests that hit the old workers right after the signal as
    /// "after the change" would misplace them on the timeline.
    pub async fn apply(&self, endpoints: &[Endpoint]) -> Result<()> {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let conf = render(&self.dir, self.addr, self.scale, endpoints, generation);
        let tmp = self.dir.join("nginx.conf.new");
        std::fs::write(&tmp, conf).context("writing nginx.conf")?;
        std::fs::rename(&tmp, self.dir.join("nginx.conf")).context("replacing nginx.conf")?;
        procs::signal(self.pid, libc::SIGHUP);
        let want = generation.to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) =
                crate::measure::httpc::get(self.addr, "/__lab/generation", Duration::from_secs(1))
                    .await
            {
                if r.body == want.as_bytes() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!("nginx did not load configuration {generation} within 10s; error log ends with: {}", tail.join(" | "));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Every request id (`id=N` in the query) in the access log.
    pub fn handled_ids(&self) -> std::collections::HashSet<u64> {
        let log = std::fs::read_to_string(self.dir.join("logs/access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let rest = &l[l.find("id=")? + 3..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                rest[..end].parse().ok()
            })
            .collect()
    }

    pub async fn stop(&self) {
        // SIGQUIT: graceful shutdown, the workers finish what they serve.
        procs::stop_daemon(self.pid, &mut *self.child.lock().await, libc::SIGQUIT).await;
    }
}

/// The `server` lines of the pods' upstream block.
fn upstream_servers(endpoints: &[Endpoint]) -> String {
    if endpoints.is_empty() {
        // nginx refuses an empty upstream block; a down placeholder answers 502 at once.
        "        server 127.0.0.1:1 down;\n".to_string()
    } else {
        endpoints
            .iter()
            .map(|e| format!("        server {} max_fails=0;\n", e.addr))
            .collect()
    }
}

/// As root, nginx would switch its workers to `nobody`; keep them as the lab's user so they
/// can use the temp paths under the output directory.
fn workers_user() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        "user root root;\n"
    } else {
        ""
    }
}

/// The whole nginx.conf for one endpoint set. Timeouts are ingress-nginx's defaults, scaled.
fn render(
    dir: &Path,
    addr: SocketAddr,
    scale: Scale,
    endpoints: &[Endpoint],
    generation: u64,
) -> String {
    // nginx knows ms but not us: whole milliseconds, at least 1.
    let d = |s: u64| {
        format!(
            "{}ms",
            scale.apply(Duration::from_secs(s)).as_millis().max(1)
        )
    };
    let servers = upstream_servers(endpoints);
    let user = workers_user();
    let p = dir.display();
    format!(
        r#"# Rendered by the lameduck lab on every endpoint change.
{user}daemon off;
master_process on;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/logs/error.log notice;
events {{ worker_connections 4096; }}
http {{
    log_format lab '$msec "$request" $status upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time';
    access_log {p}/logs/access.log lab;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    keepalive_timeout {ka};
    # WebSocket upgrades pass through, as ingress-nginx does it; any other request keeps the
    # upstream keep-alive (an empty Connection header).
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}
    upstream pods {{
{servers}        keepalive 32;
        keepalive_timeout {ka};
    }}
    server {{
        listen {addr};
        location = /__lab/generation {{
            access_log off;
            return 200 "{generation}";
        }}
        location / {{
            proxy_pass http://pods;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout {connect};
            proxy_send_timeout {rw};
            proxy_read_timeout {rw};
        }}
    }}
}}
"#,
        ka = d(60),
        connect = d(5),
        rw = d(60),
    )
}

//! From a container in the manifest to a real process on the pod's loopback address.
//!
//! A pod's network namespace is modelled by its own IP, 127.0.X.Y: every container of the pod
//! binds to it, so the containers of one pod reach each other on it (as on `localhost` in a real
//! pod), and pods never collide on ports. Container args and env are rewritten to match: host
//! parts `0.0.0.0`, `127.0.0.1` and `localhost` become the pod IP. Durations in them are scaled
//! by the time scale, and so are the binaries' own duration defaults (read from their `--help`,
//! so the lab never carries a stale copy of another crate's defaults).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;
use tokio::sync::watch;

use crate::manifest::{Container, EnvValue};
use crate::measure::record::{EventKind, Recorder};
use crate::procs;
use crate::scale::Scale;

/// The binary a container image stands for: the image's name (last path segment, no tag)
/// containing `lameduck` means lameduck; `slowapp`, `app` or the seed's `web` mean slowapp.
pub fn binary_for_image(image: &str) -> Option<&'static str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let name = last.split([':', '@']).next().unwrap_or(last);
    if name.contains("lameduck") {
        Some("lameduck")
    } else if name.contains("slowapp") || name.contains("app") || name == "web" {
        Some("slowapp")
    } else {
        None
    }
}

/// Where the pod binaries are, and what their defaults are.
#[derive(Debug)]
pub struct Binaries {
    dir: PathBuf,
    defaults: Mutex<HashMap<String, Vec<(String, String)>>>,
}

impl Binaries {
    /// `--bin-dir`, else the directory of the lab's own executable (cargo puts every binary of
    /// the workspace side by side in target/debug or target/release).
    pub fn locate(bin_dir: Option<PathBuf>) -> Result<Binaries> {
        let dir = match bin_dir {
            Some(d) => d,
            None => std::env::current_exe()
                .context("finding the lab's own executable")?
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| anyhow!("the lab's executable has no parent directory"))?,
        };
        Ok(Binaries {
            dir,
            defaults: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            bail!(
                "`{name}` not found in {}: run `cargo build --workspace` (add --release if the lab is a release build), or pass --bin-dir",
                self.dir.display()
            )
        }
    }

    /// `(ENV_VAR, default)` of every flag of `name`, from its `--help` (`[env: X=] [default: D]`).
    pub async fn env_defaults(&self, name: &str) -> Result<Vec<(String, String)>> {
        if let Some(v) = self.defaults.lock().expect("defaults lock").get(name) {
            return Ok(v.clone());
        }
        let path = self.path(name)?;
        let out = Command::new(&path)
            .arg("--help")
            .output()
            .await
            .with_context(|| format!("running {} --help", path.display()))?;
        if !out.status.success() {
            bail!(
                "{} --help failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v = parse_help_defaults(&String::from_utf8_lossy(&out.stdout));
        self.defaults
            .lock()
            .expect("defaults lock")
            .insert(name.to_string(), v.clone());
        Ok(v)
    }
}

/// Pulls `(ENV, default)` pairs out of clap's help text.
pub fn parse_help_defaults(help: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = help;
    while let Some(i) = rest.find("[env: ") {
        rest = &rest[i + 6..];
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].to_string();
        let Some(close) = rest.find(']') else { break };
        let after = &rest[close + 1..];
        if let Some(d) = after.strip_prefix(" [default: ") {
            if let Some(end) = d.find(']') {
                out.push((name, d[..end].to_string()));
            }
        }
        rest = after;
    }
    out
}

/// Replaces the host part of an address-like value with the pod IP.
pub fn rewrite_host(value: &str, ip: Ipv4Addr) -> String {
    let ip_s = ip.to_string();
    let mut v = value
        .replace("0.0.0.0", &ip_s)
        .replace("127.0.0.1", &ip_s)
        .replace("localhost", &ip_s);
    if v.starts_with(':') && v.len() > 1 && v[1..].chars().all(|c| c.is_ascii_digit()) {
        v = format!("{ip_s}{v}");
    }
    v
}

fn rewrite_value(value: &str, ip: Ipv4Addr, scale: Scale) -> String {
    scale
        .rewrite_duration(value)
        .unwrap_or_else(|| rewrite_host(value, ip))
}

/// A container, ready to exec.
#[derive(Debug, Clone)]
pub struct Launch {
    pub container: String,
    pub binary: &'static str,
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// lameduck's admin address, to read its phase from `/status`.
    pub admin: Option<SocketAddr>,
}

/// Turns a manifest container into the command line and environment of a real process.
pub async fn resolve(
    c: &Container,
    pod_name: &str,
    ip: Ipv4Addr,
    scale: Scale,
    bins: &Binaries,
) -> Result<Launch> {
    let binary = binary_for_image(&c.image).ok_or_else(|| {
        anyhow!(
            "container `{}`: cannot tell which binary image `{}` stands for (its name should contain `slowapp`, `app` or `lameduck`)",
            c.name,
            c.image
        )
    })?;
    let path = bins.path(binary)?;
    let args = resolve_args(c, binary, ip, scale)?;
    let env = resolve_env(c, bins.env_defaults(binary).await?, pod_name, ip, scale);
    let admin = if binary == "lameduck" {
        admin_addr(&args, &env)
    } else {
        None
    };
    Ok(Launch {
        container: c.name.clone(),
        binary,
        path,
        args,
        env,
        admin,
    })
}

/// The command's arguments after the binary, then `args`, each rewritten for the pod (a
/// `--flag=value` in its value).
fn resolve_args(c: &Container, binary: &str, ip: Ipv4Addr, scale: Scale) -> Result<Vec<String>> {
    let mut args: Vec<String> = Vec::new();
    if let Some((first, rest)) = c.command.split_first() {
        if Path::new(first).file_name().and_then(|f| f.to_str()) != Some(binary) {
            bail!(
                "container `{}`: command {:?} does not run `{binary}`; the lab runs the binary itself, not a shell",
                c.name,
                c.command
            );
        }
        args.extend(rest.iter().cloned());
    }
    args.extend(c.args.iter().cloned());
    Ok(args
        .iter()
        .map(|a| match a.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => {
                format!("{flag}={}", rewrite_value(v, ip, scale))
            }
            _ => rewrite_value(a, ip, scale),
        })
        .collect())
}

/// The binary's own defaults first (those the pod changes: rewritten and scaled), the pod's
/// name and IP, then the manifest's env over them.
fn resolve_env(
    c: &Container,
    defaults: Vec<(String, String)>,
    pod_name: &str,
    ip: Ipv4Addr,
    scale: Scale,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, d) in defaults {
        let v = rewrite_value(&d, ip, scale);
        if v != d {
            env.push((k, v));
        }
    }
    env.push(("POD_NAME".into(), pod_name.into()));
    env.push(("POD_IP".into(), ip.to_string()));
    for e in &c.env {
        let v = match &e.value {
            EnvValue::Literal(s) => rewrite_value(s, ip, scale),
            EnvValue::PodName => pod_name.to_string(),
            EnvValue::PodIp => ip.to_string(),
        };
        env.retain(|(k, _)| k != &e.name);
        env.push((e.name.clone(), v));
    }
    env
}

/// lameduck's admin address, from its flag or its env var.
fn admin_addr(args: &[String], env: &[(String, String)]) -> Option<SocketAddr> {
    flag_value(args, "--admin-listen")
        .or_else(|| {
            env.iter()
                .find(|(k, _)| k == "LAMEDUCK_ADMIN_LISTEN")
                .map(|(_, v)| v.clone())
        })
        .and_then(|a| a.parse().ok())
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == flag {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

/// How a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// A running container.
#[derive(Debug, Clone)]
pub struct Running {
    pub pid: u32,
    pub exited: watch::Receiver<Option<Exit>>,
}

impl Running {
    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    pub async fn wait(&self) -> Exit {
        let mut rx = self.exited.clone();
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return e;
            }
            if rx.changed().await.is_err() {
                return Exit {
                    code: None,
                    signal: None,
                };
            }
        }
    }
}

/// Starts the container's process, its output to `log_dir/<pod>-<container>.log`.
pub fn spawn(
    launch: &Launch,
    pod: &str,
    log_dir: &Path,
    rec: &std::sync::Arc<Recorder>,
) -> Result<Running> {
    let log_path = log_dir.join(format!("{pod}-{}.log", launch.container));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(&launch.path);
    cmd.args(&launch.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating a log handle")?)
        .stderr(log);
    for (k, _) in std::env::vars() {
        if k.starts_with("SLOWAPP_") || k.starts_with("LAMEDUCK_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    procs::harden(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} for pod {pod}", launch.path.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the child exited before it had a pid"))?;
    procs::register(pid);
    rec.event(
        Some(pod),
        EventKind::ContainerStarted {
            container: launch.container.clone(),
            binary: launch.binary.to_string(),
            pid,
        },
    );
    let (tx, rx) = watch::channel(None);
    let exited = ContainerExit {
        rec: rec.clone(),
        pod: pod.to_string(),
        container: launch.container.clone(),
        pid,
    };
    tokio::spawn(exited.wait(child, tx));
    Ok(Running { pid, exited: rx })
}

/// Who waits for a container's process: records its exit and publishes it to `Running`.
struct ContainerExit {
    rec: std::sync::Arc<Recorder>,
    pod: String,
    container: String,
    pid: u32,
}

impl ContainerExit {
    async fn wait(self, mut child: tokio::process::Child, tx: watch::Sender<Option<Exit>>) {
        use std::os::unix::process::ExitStatusExt;

        let status = child.wait().await;
        procs::unregister(self.pid);
        let exit = match status {
            Ok(s) => Exit {
                code: s.code(),
                signal: s.signal(),
            },
            Err(_) => Exit {
                code: None,
                signal: None,
            },
        };
        self.rec.event(
            Some(&self.pod),
            EventKind::ContainerExited {
                container: self.container,
                code: exit.code,
                signal: exit.signal,
            },
        );
        let _ = tx.send(Some(exit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_map_to_binaries() {
        assert_eq!(binary_for_image("ghcr.io/x/lameduck:1.0"), Some("lameduck"));
        assert_eq!(
            binary_for_image("harbor.gzky.com/zero-downtime/slowapp:latest"),
            Some("slowapp")
        );
        assert_eq!(
            binary_for_image("harbor.gzky.com/zero-downtime/web:latest"),
            Some("slowapp")
        );
        assert_eq!(binary_for_image("nginx:1.25"), None);
    }

    #[test]
    fn hosts_become_the_pod_ip() {
        let ip = Ipv4Addr::new(127, 0, 9, 3);
        assert_eq!(rewrite_host("0.0.0.0:8080", ip), "127.0.9.3:8080");
        assert_eq!(rewrite_host("127.0.0.1:9090", ip), "127.0.9.3:9090");
        assert_eq!(rewrite_host(":9090", ip), "127.0.9.3:9090");
        assert_eq!(rewrite_host("http:/ready", ip), "http:/ready");
    }

    #[test]
    fn help_defaults_are_read() {
        let help = "  --listen <ADDR>  Address [env: SLOWAPP_LISTEN=] [default: 0.0.0.0:9090]\n  --name <N>  Name [env: SLOWAPP_NAME=]\n  --d <D> x [env: SLOWAPP_D=] [default: 5s]\n";
        assert_eq!(
            parse_help_defaults(help),
            vec![
                ("SLOWAPP_LISTEN".to_string(), "0.0.0.0:9090".to_string()),
                ("SLOWAPP_D".to_string(), "5s".to_string())
            ]
        );
    }
}

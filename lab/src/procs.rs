//! Every child process the lab starts is registered here, so none outlives the lab.
//!
//! Three layers, because each covers a way of ending the others miss: the normal teardown kills
//! what it started; a panic hook and the Ctrl-C handler kill whatever is still registered; and
//! each child is spawned with `PR_SET_PDEATHSIG` so the kernel kills it even when the lab itself
//! is SIGKILLed. Each child leads its own process group, so nginx's and HAProxy's workers go
//! with their master.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Prepares a command: own process group, killed with the lab. The lab's one `unsafe`: a
/// `pre_exec` hook (unsafe by its contract: it runs between fork and exec).
#[allow(unsafe_code)]
pub fn harden(cmd: &mut Command) {
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
}

/// Starts a front daemon (nginx, HAProxy) from `cmd`: no stdin, its output to `log`,
/// hardened, registered. Returns it with its pid.
pub fn start_daemon(mut cmd: Command, log: std::fs::File, name: &str) -> Result<(Child, u32)> {
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    harden(&mut cmd);
    let program = Path::new(cmd.as_std().get_program()).display().to_string();
    let child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
    register(pid);
    Ok((child, pid))
}

pub fn register(pid: u32) {
    LIVE.lock().expect("procs lock").insert(pid as i32);
}

pub fn unregister(pid: u32) {
    LIVE.lock().expect("procs lock").remove(&(pid as i32));
}

/// Sends `sig` to one process (not its group): what the kubelet does to a container. A pid
/// that has exited meanwhile gets ESRCH, which is fine.
pub fn signal(pid: u32, sig: i32) {
    if let Ok(sig) = Signal::try_from(sig) {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
}

/// SIGKILLs the process group `leader` leads (see [`harden`]).
fn kill_group(leader: i32) {
    let _ = killpg(Pid::from_raw(leader), Signal::SIGKILL);
}

/// How long a front daemon gets to finish after its graceful-stop signal.
const DAEMON_GRACE: Duration = Duration::from_secs(3);

/// Stops a daemon that leads its own process group (nginx, HAProxy) and forgets it.
///
/// `graceful` goes to the master alone, so it can let its workers finish their requests; if
/// the master has not exited after [`DAEMON_GRACE`], the whole group gets SIGKILL, so that no
/// worker outlives the front (and the lab's teardown is bounded).
pub async fn stop_daemon(pid: u32, child: &mut Child, graceful: i32) {
    signal(pid, graceful);
    if tokio::time::timeout(DAEMON_GRACE, child.wait())
        .await
        .is_err()
    {
        kill_group(pid as i32);
        let _ = child.wait().await;
    }
    unregister(pid);
}

/// SIGKILLs the process group of every registered child. Safe to call from a panic hook.
pub fn kill_all() {
    let pids: Vec<i32> = match LIVE.lock() {
        Ok(mut l) => std::mem::take(&mut *l).into_iter().collect(),
        Err(p) => std::mem::take(&mut *p.into_inner()).into_iter().collect(),
    };
    for pid in pids {
        kill_group(pid);
    }
}

/// Installs the panic hook that kills every child before the default hook reports the panic.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        default(info);
    }));
}

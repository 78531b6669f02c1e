//! The progress line on stderr while a run goes on.
//!
//! On a terminal it is one line rewritten in place; otherwise (CI logs, tests) a plain line
//! every few seconds, so a log stays readable.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::measure::record::Recorder;

#[derive(Debug, Clone)]
pub struct Progress {
    tty: bool,
    quiet: bool,
    stage: Arc<Mutex<String>>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            quiet,
            stage: Arc::new(Mutex::new(String::new())),
        }
    }

    pub fn set(&self, label: &str, stage: &str) {
        *self.stage.lock().expect("progress lock") = stage.to_string();
        if !self.quiet && !self.tty {
            eprintln!("[{label}] {stage}");
        }
    }

    pub fn rollout(&self, n: u32) {
        *self.stage.lock().expect("progress lock") = format!("rollout {n}");
    }

    /// Prints the line periodically until aborted.
    pub fn ticker(
        &self,
        label: &str,
        rec: Arc<Recorder>,
        restarts: u32,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let label = label.to_string();
        tokio::spawn(async move {
            let every = if me.tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            loop {
                tokio::time::sleep(every).await;
                if me.quiet {
                    continue;
                }
                let stage = me.stage.lock().expect("progress lock").clone();
                let (n, failed) = rec.request_count();
                let line = format!(
                    "[{label}] {:5.1}s  {stage}/{restarts}  requests {n}  failed {failed}",
                    rec.now()
                );
                if me.tty {
                    eprint!("\r\x1b[2K{line}");
                    let _ = std::io::stderr().flush();
                } else {
                    eprintln!("{line}");
                }
            }
        })
    }

    pub fn done(&self, label: &str, rec: &Recorder) {
        if self.quiet {
            return;
        }
        let (n, failed) = rec.request_count();
        let line = format!(
            "[{label}] done in {:.1}s: {n} requests, {failed} failed",
            rec.now()
        );
        if self.tty {
            eprintln!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

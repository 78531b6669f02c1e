//! `lab loadgen`: the lab's open-loop load against one address, every request printed as one
//! JSON line when it stops; what `lab e2e-report` reads back.
//!
//! `--load` picks the load as `lab rollout --load` does, from the same modules
//! ([`crate::measure`]): the HTTP/1.1 mix, gRPC unary calls or server streams on `--connections`
//! long-lived tonic channels to the address (each reconnects through the Service after a GOAWAY
//! or a closed connection; a call no server processed is sent again, the lab's transparent-retry
//! rule), or WebSocket messages on `--connections` WebSockets to slowapp's `/ws` (each reconnects
//! after a clean close and sends again what had no echo).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use serde::Deserialize;

use crate::measure::load::{Load, LoadConfig};
use crate::measure::record::{Recorder, RequestRecord};
use crate::measure::{LoadKind, ProtocolLoad, Target};
use crate::report::LoadJson;

/// `lab loadgen`: the lab's load against one address, records as JSON on stdout.
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Where to send the load: IP:PORT (a Service's ClusterIP; there is no DNS lookup).
    #[arg(long)]
    pub target: SocketAddr,

    /// What the load sends: HTTP/1.1 requests (the mix below), gRPC unary calls or server
    /// streams on long-lived channels, or WebSocket messages on long-lived connections.
    #[arg(long, value_enum, default_value = "http")]
    pub load: LoadKind,

    /// Long-lived connections of the grpc-* and websocket loads (gRPC channels, WebSockets).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub connections: u32,

    /// Replies per grpc-stream call (slowapp's `Count`), one every delay / N.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub stream_messages: u32,

    /// Requests per second, open loop.
    #[arg(long, default_value_t = 80.0, value_parser = crate::values::positive_f64)]
    pub rate: f64,

    /// Stop after this long at the latest.
    #[arg(long, default_value = "10m", value_parser = crate::values::parse_duration)]
    pub duration: Duration,

    /// Also stop when stdin reaches end of file (`kubectl attach -i` closing).
    #[arg(long)]
    pub stop_on_stdin_eof: bool,

    /// Share of requests from keep-alive clients; the rest open a connection per request.
    #[arg(long, default_value_t = 0.5, value_parser = crate::values::share)]
    pub keepalive_share: f64,

    /// Share of POSTs with a body.
    #[arg(long, default_value_t = 0.3, value_parser = crate::values::share)]
    pub post_share: f64,

    /// Share of long requests.
    #[arg(long, default_value_t = 0.2, value_parser = crate::values::share)]
    pub long_share: f64,

    /// `delay_ms` of a short request.
    #[arg(long, default_value = "100ms", value_parser = crate::values::parse_duration)]
    pub short_delay: Duration,

    /// `delay_ms` of a long request (the seed's handler sleeps 5 s).
    #[arg(long, default_value = "5s", value_parser = crate::values::parse_duration)]
    pub long_delay: Duration,

    /// A request with no complete response after this counts as a timeout.
    #[arg(long, default_value = "30s", value_parser = crate::values::parse_duration)]
    pub request_timeout: Duration,

    /// Seed of the load mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What `lab loadgen` prints: how it ran, and every request.
#[derive(Debug, serde::Serialize, Deserialize)]
// The records' client and method are `&'static str`: read back from an owned `Value`.
#[serde(bound(deserialize = "'de: 'static"))]
pub(super) struct LoadgenOutput {
    #[serde(flatten)]
    pub(super) run: LoadgenRun,
    pub(super) requests: Vec<RequestRecord>,
}

/// How a load generator ran: its wall-clock start (to put the cluster's events on the same
/// axis), its target and settings, and what stopped it. run.json keeps it as `load`.
#[derive(Debug, serde::Serialize, Deserialize)]
pub(super) struct LoadgenRun {
    pub(super) started_unix: f64,
    pub(super) target: String,
    /// What was sent (`http`, `grpc-unary`, `grpc-stream`, `websocket`); a record without it
    /// is from before the load had kinds: `http`.
    #[serde(default = "http")]
    pub(super) kind: String,
    /// The grpc-* and websocket loads' long-lived connections (none for `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) connections: Option<u32>,
    #[serde(flatten)]
    pub(super) load: LoadJson,
    /// Why the load stopped: `duration` or `stdin closed`.
    pub(super) stopped_by: String,
}

fn http() -> String {
    LoadKind::Http.name().to_string()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub async fn loadgen(args: LoadgenArgs) -> Result<bool> {
    let cfg = LoadConfig {
        rate: args.rate,
        keepalive_share: args.keepalive_share,
        post_share: args.post_share,
        long_share: args.long_share,
        short_delay: args.short_delay,
        long_delay: args.long_delay,
        timeout: args.request_timeout,
        seed: args.seed,
    };
    let rec = Recorder::new();
    let started_unix = unix_now();
    let proto = ProtocolLoad {
        kind: args.load,
        connections: args.connections as usize,
        stream_messages: args.stream_messages,
    };
    let load = Load::start_kind(&proto, Target::Addr(args.target), cfg.clone(), rec.clone())?;
    let stdin_closed = async {
        if !args.stop_on_stdin_eof {
            return std::future::pending().await;
        }
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let stopped_by = tokio::select! {
        _ = tokio::time::sleep(args.duration) => "duration",
        _ = stdin_closed => "stdin closed",
    };
    load.stop().await;
    let out = LoadgenOutput {
        run: LoadgenRun {
            started_unix,
            target: args.target.to_string(),
            kind: args.load.name().to_string(),
            connections: (args.load != LoadKind::Http).then_some(args.connections),
            load: LoadJson::from(&cfg),
            stopped_by: stopped_by.to_string(),
        },
        requests: rec.requests(),
    };
    // One line, so it can be picked out of `kubectl logs` whatever else the runtime adds.
    println!("{}", serde_json::to_string(&out)?);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::measure::record::Outcome;

    #[test]
    fn outcomes_read_back() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let r = RequestRecord::deserialize(v(
            r#"{"id":3,"start":1.0,"end":1.5,"client":"new","reused":false,"retried":false,
               "method":"POST","delay_ms":100,"outcome":"refused","local_port":0}"#,
        ))
        .unwrap();
        assert_eq!(r.outcome, Outcome::Refused);
        assert_eq!(r.method, "POST");
        assert!(RequestRecord::deserialize(v(
            r#"{"id":3,"start":1.0,"end":1.5,"client":"x","reused":false,"retried":false,
               "method":"POST","delay_ms":100,"outcome":"ok","local_port":0}"#
        ))
        .is_err());
    }
}

//! The app readiness probe: lameduck's `/ready` is only as good as its view of the app.
//!
//! The kubelet probes lameduck, not the app, so lameduck probes the app itself, on its own
//! schedule, and keeps the verdict in the [`Lifecycle`]. The first success ends `Starting`.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::{AppProbe, ProbeConfig};
use crate::lifecycle::Lifecycle;

/// Probes the app every `interval` until the process exits.
pub async fn probe_loop(lc: Arc<Lifecycle>, config: ProbeConfig) {
    let ProbeConfig {
        upstream,
        probe,
        interval,
        timeout,
    } = config;
    let mut last: Option<Result<(), String>> = None;
    loop {
        let result = match tokio::time::timeout(timeout, probe_once(upstream, &probe)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer within {}",
                crate::config::fmt_duration(timeout)
            )),
        };
        if let Err(reason) = &result {
            if last.as_ref().is_none_or(|l| l.is_ok()) {
                tracing::info!(probe = %probe, %upstream, reason, "app probe failing");
            }
        }
        lc.set_app_ready(result.is_ok());
        last = Some(result);
        tokio::time::sleep(interval).await;
    }
}

/// One probe: `Ok` when the app counts as ready, else why not.
pub async fn probe_once(upstream: SocketAddr, probe: &AppProbe) -> Result<(), String> {
    let path = match probe {
        AppProbe::None => return Ok(()),
        AppProbe::Tcp => {
            return TcpStream::connect(upstream)
                .await
                .map(drop)
                .map_err(|e| format!("connect: {e}"))
        }
        AppProbe::Grpc { service } => return grpc_health_check(upstream, service).await,
        AppProbe::Http { path } => path,
    };
    let stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, upstream.to_string())
        .header(
            hyper::header::USER_AGENT,
            concat!("lameduck/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("GET {path} answered {}", resp.status()))
    }
}

/// The standard gRPC health check (`grpc.health.v1.Health/Check`) over h2c, on a fresh
/// connection each time like the HTTP probe, so an app that restarted is seen as it is now.
async fn grpc_health_check(upstream: SocketAddr, service: &str) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{upstream}"))
        .map_err(|e| format!("grpc endpoint: {e}"))?
        .user_agent(concat!("lameduck/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| format!("grpc endpoint: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("connect (h2c): {}", crate::upstream_h2::error_text(&e)))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(|status| {
            format!(
                "grpc.health.v1 Check({service:?}) failed: {:?}: {}",
                status.code(),
                status.message()
            )
        })?;
    match ServingStatus::try_from(answer.into_inner().status) {
        Ok(ServingStatus::Serving) => Ok(()),
        Ok(other) => Err(format!(
            "grpc.health.v1 Check({service:?}) answered {}",
            other.as_str_name()
        )),
        Err(_) => Err(format!(
            "grpc.health.v1 Check({service:?}) answered an unknown status"
        )),
    }
}

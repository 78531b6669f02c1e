//! slowapp's gRPC side, on the same port as HTTP: the `slowapp.v1.Slow` service (with the same
//! delay knob as `/`) and the standard `grpc.health.v1.Health`.
//!
//! A request is gRPC when its `content-type` is `application/grpc` or `application/grpc+...`
//! (what every gRPC client sends); everything else is the HTTP app. So one listener, one
//! hyper connection builder (which already tells HTTP/1.1 from prior-knowledge h2c), two apps.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use slowapp::proto::{
    CountRequest, EchoMessage, HelloReply, HelloRequest, Slow, SlowServer, MAX_MESSAGE_BYTES,
};
use tokio_stream::{Stream, StreamExt};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::handler::InFlight;

/// The largest reply payload a `Hello` may ask for.
const MAX_REPLY_BYTES: u64 = 64 * 1024 * 1024;

/// Whether a request is for the gRPC side, by its `content-type`.
pub fn is_grpc(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct == "application/grpc"
                || ct.starts_with("application/grpc+")
                || ct.starts_with("application/grpc;")
        })
}

/// The `content-type` header's value, for [`is_grpc`].
pub fn content_type<B>(req: &hyper::Request<B>) -> Option<&HeaderValue> {
    req.headers().get(CONTENT_TYPE)
}

/// The gRPC services and the health reporter that the shutdown flips to `NOT_SERVING`.
pub struct Grpc {
    pub routes: Routes,
    pub health: HealthReporter,
}

/// Builds the gRPC side: `Slow` and `grpc.health.v1.Health`, both `SERVING` (the overall `""`
/// and `slowapp.v1.Slow`) from the moment slowapp listens.
pub async fn services(served_by: &HeaderValue, response_delay: Duration) -> Grpc {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SlowServer<SlowService>>().await;
    let slow = SlowService {
        served_by: Arc::from(served_by.to_str().unwrap_or("")),
        response_delay,
    };
    let slow = SlowServer::new(slow)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let routes = Routes::new(slow).add_service(health_service).prepare();
    Grpc { routes, health }
}

impl Grpc {
    /// What a graceful gRPC server does at shutdown: health checks now say `NOT_SERVING`, so a
    /// client still connected stops picking this backend.
    pub async fn not_serving(&self) {
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.health
            .set_not_serving::<SlowServer<SlowService>>()
            .await;
    }
}

#[derive(Debug, Clone)]
pub struct SlowService {
    served_by: Arc<str>,
    response_delay: Duration,
}

impl SlowService {
    fn delay(&self, delay_ms: Option<u64>) -> Duration {
        delay_ms.map_or(self.response_delay, Duration::from_millis)
    }

    fn reply(&self, seq: u64, received_bytes: u64, payload: Bytes) -> HelloReply {
        HelloReply {
            message: "Hello World!".to_string(),
            served_by: self.served_by.to_string(),
            seq,
            received_bytes,
            payload,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Slow for SlowService {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let req = request.into_inner();
        if req.reply_bytes > MAX_REPLY_BYTES {
            return Err(Status::invalid_argument(format!(
                "reply_bytes must be at most {MAX_REPLY_BYTES}, got {}",
                req.reply_bytes
            )));
        }
        let delay = self.delay(req.delay_ms);
        let received = req.payload.len() as u64;
        tracing::info!(
            rpc = "Hello",
            delay_ms = delay.as_millis() as u64,
            received_bytes = received,
            "start"
        );
        tokio::time::sleep(delay).await;
        tracing::info!(rpc = "Hello", "return");
        let payload = Bytes::from(vec![b'x'; req.reply_bytes as usize]);
        Ok(Response::new(self.reply(1, received, payload)))
    }

    type CountStream = BoxStream<HelloReply>;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let req = request.into_inner();
        let delay = self.delay(req.delay_ms);
        tracing::info!(
            rpc = "Count",
            count = req.count,
            delay_ms = delay.as_millis() as u64,
            "start"
        );
        let this = self.clone();
        let stream = async_stream(req.count, delay, this);
        Ok(Response::new(Box::pin(stream)))
    }

    type EchoStream = BoxStream<EchoMessage>;

    async fn echo(
        &self,
        request: Request<Streaming<EchoMessage>>,
    ) -> Result<Response<Self::EchoStream>, Status> {
        // Each message goes straight back: the stream is the client's, mapped.
        let stream = request
            .into_inner()
            .map(|m| m.map(|m| EchoMessage { payload: m.payload }));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// `count` replies, the first after one delay, each next after another.
fn async_stream(
    count: u32,
    delay: Duration,
    service: SlowService,
) -> impl Stream<Item = Result<HelloReply, Status>> + Send + 'static {
    tokio_stream::iter(1..=u64::from(count)).then(move |seq| {
        let service = service.clone();
        async move {
            tokio::time::sleep(delay).await;
            Ok(service.reply(seq, 0, Bytes::new()))
        }
    })
}

/// A gRPC response body that keeps its request counted as in flight until the last frame (the
/// trailers) is sent: a gRPC handler returns at once with a stream, so the handler's own life
/// says nothing about when the call ends.
pub struct Tracked<B> {
    inner: B,
    guard: Option<InFlight>,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: InFlight) -> Self {
        Tracked {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(guard) = self.guard.take() {
                guard.complete();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_told_by_content_type() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_grpc(Some(&v("application/grpc"))));
        assert!(is_grpc(Some(&v("application/grpc+proto"))));
        assert!(!is_grpc(Some(&v("application/grpc-web"))));
        assert!(!is_grpc(Some(&v("text/plain"))));
        assert!(!is_grpc(None));
    }
}

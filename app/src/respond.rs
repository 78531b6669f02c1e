//! What every answer of slowapp shares, whichever route sends it (the HTTP handler, the
//! WebSocket upgrade): the pod's name header, the delay knob, plain-text bodies.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// The header that tells a client (a test, the lab) which pod answered.
pub static SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// `?delay_ms=N` overrides the response delay for one request, so one app can serve both the
/// long and the short requests a rollout test needs.
pub(crate) fn delay_override(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("delay_ms=") {
            return value
                .parse::<u64>()
                .map(|ms| Some(Duration::from_millis(ms)))
                .map_err(|_| {
                    format!("delay_ms must be a whole number of milliseconds, got `{value}`")
                });
        }
    }
    Ok(None)
}

/// A plain-text answer, typed as the seed's Go handlers' were.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    // What Go's content sniffing sets for the seed's plain-text answers.
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

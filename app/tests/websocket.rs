//! `GET /ws` is a WebSocket echo with the `/` handler's delay knob, and at shutdown it does what
//! an app with no help does: the open connections end with the process, without a Close frame.
//! A real tungstenite client over a real socket against the real binary.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens `/ws{query}` and returns the socket with the handshake's `X-Served-By`.
async fn open(addr: SocketAddr, query: &str) -> (WebSocketStream<TcpStream>, Option<String>) {
    let tcp = TcpStream::connect(addr).await.expect("connecting");
    let (ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/ws{query}"), tcp)
        .await
        .expect("the WebSocket handshake");
    let served_by = response
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (ws, served_by)
}

/// The next data message, skipping control frames, within the test's patience.
async fn next_data(ws: &mut WebSocketStream<TcpStream>) -> Result<Message, String> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Err(_) => return Err("no message within the patience".into()),
            Ok(None) => return Err("stream ended".into()),
            Ok(Some(Err(e))) => return Err(format!("{e}")),
            Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => return Ok(m),
            Ok(Some(Ok(Message::Close(f)))) => return Err(format!("close {f:?}")),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[test]
fn every_message_is_echoed_after_the_delay_in_order() {
    let app = SlowApp::start(&["--startup-delay", "0s", "--name", "pod-ws"]);
    runtime().block_on(async {
        let (mut ws, served_by) = open(app.addr, "?delay_ms=300").await;
        assert_eq!(served_by.as_deref(), Some("pod-ws"));
        let sent = Instant::now();
        ws.send(Message::text("one")).await.unwrap();
        ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        ws.send(Message::text("three")).await.unwrap();
        assert_eq!(next_data(&mut ws).await.unwrap(), Message::text("one"));
        assert!(
            sent.elapsed() >= Duration::from_millis(300),
            "echoed before the delay"
        );
        assert_eq!(
            next_data(&mut ws).await.unwrap(),
            Message::binary(vec![1u8, 2, 3])
        );
        assert_eq!(next_data(&mut ws).await.unwrap(), Message::text("three"));
        // A clean close from the client is answered with a Close.
        ws.close(None).await.unwrap();
        let rest: Vec<_> = ws.collect().await;
        assert!(
            rest.iter().all(|m| matches!(m, Ok(Message::Close(_)))),
            "{rest:?}"
        );
    });
    app.wait_for_log("websocket closed");
}

#[test]
fn ws_without_an_upgrade_is_426_and_a_bad_delay_is_400() {
    let app = SlowApp::start(&["--startup-delay", "0s"]);
    let plain = get(app.addr, "/ws").unwrap();
    assert_eq!(plain.status, 426, "{}", plain.text());
    assert_eq!(plain.header("upgrade"), Some("websocket"));
    runtime().block_on(async {
        let tcp = TcpStream::connect(app.addr).await.unwrap();
        let err =
            tokio_tungstenite::client_async(format!("ws://{}/ws?delay_ms=soon", app.addr), tcp)
                .await
                .expect_err("a bad delay_ms must be refused");
        match err {
            WsError::Http(r) => assert_eq!(r.status(), 400),
            other => panic!("expected an HTTP 400, got {other}"),
        }
    });
    // The app keeps serving.
    assert_eq!(get(app.addr, "/ready").unwrap().status, 200);
}

#[test]
fn at_sigterm_open_websockets_end_with_the_process_without_a_close_frame() {
    let mut app = SlowApp::start(&["--startup-delay", "0s", "--shutdown-timeout", "1m"]);
    runtime().block_on(async {
        let (mut ws, _) = open(app.addr, "").await;
        ws.send(Message::text("before")).await.unwrap();
        assert_eq!(next_data(&mut ws).await.unwrap(), Message::text("before"));

        app.signal(libc::SIGTERM);
        app.wait_for_log("stopped accepting");
        // No request in flight: the drain is over at once, and the process exits 0.
        assert_eq!(app.wait_exit().code(), Some(0));

        // What the client then sees: the connection ends, and no Close frame came first
        // (tungstenite's "reset without closing handshake", a 1006 to a browser).
        let end = loop {
            match tokio::time::timeout(PATIENCE, ws.next()).await {
                Err(_) => panic!("the connection did not end"),
                Ok(Some(Ok(Message::Close(f)))) => panic!("got a Close frame {f:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => break Some(e),
                Ok(None) => break None,
            }
        };
        assert!(
            matches!(
                end,
                Some(WsError::Protocol(
                    tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                )) | Some(WsError::Io(_))
            ),
            "{end:?}"
        );
    });
    assert!(
        app.log_contains("1 WebSocket connection(s) end with the process"),
        "log:\n{}",
        app.log().join("\n")
    );
}

//! WebSocket connections at shutdown, as a contract: a WebSocket open when draining begins is
//! told to go with Close 1001 (Going Away), both ways, and ends in a clean close handshake
//! before the drain timeout, instead of being cut (close code 1006 at both ends). Real peers:
//! tokio-tungstenite on both sides of a real lameduck.

mod common;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use common::*;

/// A WebSocket echo app; every close code it receives goes to the channel.
async fn echo_app() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<Option<CloseCode>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Close(frame) => {
                            let _ = tx.send(frame.map(|f| f.code));
                        }
                        m @ (Message::Text(_) | Message::Binary(_))
                            if ws.send(m.clone()).await.is_err() =>
                        {
                            return;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_websocket_open_at_the_drain_is_closed_with_going_away_both_ways() {
    let (app, mut app_closes) = echo_app().await;
    let ld = tokio::task::spawn_blocking(move || {
        Lameduck::start_ready(app, &["--app-probe", "none", "--drain-timeout", "10s"])
    })
    .await
    .unwrap();

    let stream = tokio::net::TcpStream::connect(ld.data).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://t/chat", stream)
        .await
        .expect("the upgrade goes through lameduck");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    // Draining begins (the window is 300 ms in tests); the connection is told to go.
    let admin = ld.admin;
    let drain = tokio::task::spawn_blocking(move || get(admin, "/drain"));
    let close = tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("the client saw no Close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("a Close frame before the drain timeout");
    assert_eq!(
        close.map(|f| f.code),
        Some(CloseCode::Away),
        "1001 Going Away"
    );
    // tungstenite answers the Close; the connection then ends cleanly.
    let end = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    assert!(
        matches!(end, None | Some(Err(_))),
        "the stream ends after the handshake: {end:?}"
    );
    assert_eq!(
        tokio::time::timeout(DEADLINE, app_closes.recv())
            .await
            .unwrap(),
        Some(Some(CloseCode::Away)),
        "the app was told 1001 too, not cut"
    );

    let drained = drain.await.unwrap().unwrap();
    assert_eq!(drained.status, 200);
    let mut ld = ld;
    let status = tokio::task::spawn_blocking(move || {
        // Drained by /drain, lameduck exits at the SIGTERM that follows (as the kubelet sends).
        ld.proc.sigterm();
        let status = ld.proc.wait_exit(DEADLINE);
        (status, ld.proc.log_text())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.1);
    assert!(
        status.1.contains("requests_cut=0"),
        "nothing was cut at the drain timeout:\n{}",
        status.1
    );
}

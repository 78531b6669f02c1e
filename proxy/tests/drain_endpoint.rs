//! `GET|POST /drain`: what the app container's preStop hook calls. It starts the shutdown as
//! SIGTERM does and answers only once lameduck has drained, so the app gets its own SIGTERM
//! only after the last request through lameduck has finished.

mod common;

use common::*;

#[test]
fn drain_blocks_until_drained_and_answers_every_waiter() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let mut ld = Lameduck::start_ready(app_addr, &["--shutdown-delay", "300ms"]);

    let data = ld.data;
    let slow = in_background(move || get(data, "/?delay_ms=1200"));
    wait_until("the slow request to be in flight", DEADLINE, || {
        ld.status()["in_flight"] == 1
    });

    // Many concurrent waiters, GET and POST: the kubelet may retry, several containers may ask.
    let admin = ld.admin;
    let waiters: Vec<_> = (0..8)
        .map(|i| {
            in_background(move || {
                let mut c = Client::connect(admin).unwrap();
                let method = if i % 2 == 0 { "GET" } else { "POST" };
                c.send(&format!(
                    "{method} /drain HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"
                ))
                .unwrap();
                c.read_response().unwrap()
            })
        })
        .collect();
    ld.wait_phase("lame_duck");
    assert_eq!(get(ld.admin, "/ready").unwrap().status, 503);

    // The in-flight request finishes first; only then do the waiters get their answer.
    let r = slow.join().unwrap().unwrap();
    assert_eq!(r.status, 200);
    for w in waiters {
        let resp = w.join().unwrap();
        assert_eq!(resp.status, 200);
        let summary: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(summary["phase"], "drained");
        assert_eq!(summary["shutdown_cause"], "admin /drain");
        assert_eq!(summary["in_flight"], 0);
        assert_eq!(summary["requests_cut"], 0);
    }

    // Drained by /drain but never signalled: stays up (a native sidecar waits for its SIGTERM).
    assert!(ld.proc.is_running());
    assert_eq!(get(ld.admin, "/live").unwrap().status, 200);
    // Already drained: answered at once.
    assert_eq!(get(ld.admin, "/drain").unwrap().status, 200);

    ld.proc.sigterm();
    assert_eq!(ld.proc.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn drain_and_sigterm_together_exit_zero_after_answering() {
    // Classic sidecar: the kubelet runs the app's preStop (/drain) and sends lameduck SIGTERM
    // at the same moment.
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let mut ld = Lameduck::start_ready(app_addr, &["--shutdown-delay", "200ms"]);
    let admin = ld.admin;
    let waiter = in_background(move || get(admin, "/drain"));
    ld.wait_phase("lame_duck");
    ld.proc.sigterm();
    assert_eq!(
        waiter.join().unwrap().unwrap().status,
        200,
        "the waiter is answered before exit"
    );
    assert_eq!(ld.proc.wait_exit(DEADLINE).code(), Some(0));
}

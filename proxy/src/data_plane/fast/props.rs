//! Property tests of the hand-written HTTP/1 parsing (`cargo test`, stable Rust): whatever the
//! bytes and however they are split, the parsers never panic, decide the same as on the whole
//! input, and what they accept reaches the app in exactly one framing.

use proptest::prelude::*;

use super::body::ChunkedEnd;
use super::head::{self, BodyFraming, Request, Response, ResponseContext};

/// Request heads built from the pieces smuggling attempts are made of, so that the generator
/// reaches the interesting rules, not only "malformed".
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pick = |options: &'static [&'static str]| prop::sample::select(options);
    let method = pick(&["GET", "POST", "HEAD", "PUT", "OPTIONS", "CONNECT", "G T"]);
    let target = pick(&["/", "/a?b", "*", "http://h/x", "h:1", "/ x", ""]);
    let version = pick(&["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "]);
    let header = prop_oneof![
        Just("Host: h".to_string()),
        Just("Host: other".to_string()),
        "Content-Length: [0-9, +-]{0,6}",
        "Transfer-Encoding: (chunked|gzip|identity|xchunked| chunked|chunked, chunked|)",
        Just("Transfer-Encoding : chunked".to_string()),
        "Connection: (close|keep-alive|upgrade|Host|Content-Length|x-a)",
        "Upgrade: (websocket|h2c)",
        "Expect: (100-continue|nope)",
        Just(" folded".to_string()),
        "X-A: [ -~]{0,8}",
        "[!-~]{1,6}: [ -~]{0,6}",
    ];
    (
        method,
        target,
        version,
        prop::collection::vec(header, 0..8),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(m, t, v, hs, body)| {
            let mut raw = format!("{m} {t} {v}\r\n");
            for h in hs {
                raw.push_str(&h);
                raw.push_str("\r\n");
            }
            raw.push_str("\r\n");
            let mut raw = raw.into_bytes();
            raw.extend_from_slice(&body);
            raw
        })
}

/// A summary of a decision that can be compared (plans hold buffers).
fn decide(buf: &[u8]) -> String {
    match head::parse_request(buf, "10.0.0.1") {
        Request::Partial => "partial".into(),
        Request::Reject(code, why) => format!("reject {code} {why}"),
        Request::Forward(p) => format!(
            "forward {} {:?} {} {} {} {} {}",
            p.head_len,
            p.body,
            p.client_close,
            p.http10,
            p.expect_continue,
            p.upgrade,
            String::from_utf8_lossy(&p.upstream_head)
        ),
    }
}

/// The framing headers of a head the app receives, as the app would read them.
fn app_framing(upstream: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut headers = [httparse::EMPTY_HEADER; 300];
    let mut req = httparse::Request::new(&mut headers);
    let n = req
        .parse(upstream)
        .expect("the head lameduck writes parses");
    assert!(n.is_complete(), "the head lameduck writes is complete");
    let values = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect::<Vec<_>>()
    };
    (values("content-length"), values("transfer-encoding"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_request_head_decides_the_same_whole_or_in_any_prefix(raw in request_bytes()) {
        let whole = decide(&raw);
        // Every shorter prefix is either still partial or already the same decision (a
        // refusal can come early, a forward only once the head is complete).
        for cut in 0..raw.len() {
            let part = decide(&raw[..cut]);
            if part != "partial" && !part.starts_with("reject") {
                prop_assert_eq!(&part, &whole, "prefix of {} bytes", cut);
            }
        }
    }

    #[test]
    fn what_is_forwarded_has_exactly_one_framing(raw in request_bytes()) {
        if let Request::Forward(p) = head::parse_request(&raw, "10.0.0.1") {
            let (lengths, codings) = app_framing(&p.upstream_head);
            match p.body {
                BodyFraming::Chunked => {
                    prop_assert!(lengths.is_empty());
                    prop_assert_eq!(codings, vec!["chunked".to_string()]);
                }
                BodyFraming::Length(n) => {
                    prop_assert!(codings.is_empty());
                    prop_assert!(lengths.len() <= 1);
                    if n > 0 {
                        prop_assert_eq!(lengths, vec![n.to_string()]);
                    }
                }
            }
            // And read again, lameduck's own head is forwarded the same way (a fixed point).
            let again = head::parse_request(&p.upstream_head, "10.0.0.1");
            let Request::Forward(q) = again else {
                return Err(TestCaseError::fail("lameduck's own head is refused"));
            };
            prop_assert_eq!(q.body, p.body);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = head::parse_request(&raw, "10.0.0.1");
        let _ = head::parse_response(&raw, ResponseContext::default());
        let _ = ChunkedEnd::default().feed(&raw);
    }

    #[test]
    fn a_chunked_body_ends_at_the_same_byte_however_it_is_split(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6),
        trailer in prop::option::of("[a-z]{1,5}: [a-z]{0,5}"),
        next in prop::collection::vec(any::<u8>(), 0..20),
        splits in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut raw = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            raw.extend_from_slice(c);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n");
        if let Some(t) = &trailer {
            raw.extend_from_slice(t.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        let body_len = raw.len();
        raw.extend_from_slice(&next);

        prop_assert_eq!(ChunkedEnd::default().feed(&raw).unwrap(), Some(body_len));
        // Split at arbitrary points: the end is found at the same offset.
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(raw.len() + 1)).collect();
        cuts.push(raw.len());
        cuts.sort_unstable();
        let mut end = ChunkedEnd::default();
        let mut start = 0;
        let mut found = None;
        for cut in cuts {
            if cut < start { continue; }
            if let Some(k) = end.feed(&raw[start..cut]).unwrap() {
                found = Some(start + k);
                break;
            }
            start = cut;
        }
        prop_assert_eq!(found, Some(body_len));
    }

    #[test]
    fn a_response_head_decides_the_same_in_any_prefix(
        status in prop_oneof![Just(100u16), Just(101), Just(103), Just(200), Just(204), Just(304), Just(502)],
        headers in prop::collection::vec(prop_oneof![
            "Content-Length: [0-9, ]{0,5}",
            "Transfer-Encoding: (chunked|gzip|gzip, chunked)",
            "Connection: (close|keep-alive|upgrade)",
            "X-[a-z]{1,4}: [a-z]{0,4}",
        ], 0..6),
    ) {
        let mut raw = format!("HTTP/1.1 {status} R\r\n");
        for h in headers { raw.push_str(&h); raw.push_str("\r\n"); }
        raw.push_str("\r\n");
        let raw = raw.into_bytes();
        let summary = |b: &[u8]| match head::parse_response(b, ResponseContext::default()) {
            Response::Partial => "partial".to_string(),
            Response::Invalid(w) => format!("invalid {w}"),
            Response::Forward(p) => format!("{} {:?} {}", p.head_len, p.framing, String::from_utf8_lossy(&p.client_head)),
        };
        let whole = summary(&raw);
        prop_assert!(whole != "partial");
        for cut in 0..raw.len() {
            let part = summary(&raw[..cut]);
            prop_assert!(part == "partial" || part.starts_with("invalid"), "prefix {} decided early: {}", cut, part);
        }
        if let Response::Forward(p) = head::parse_response(&raw, ResponseContext::default()) {
            let text = String::from_utf8_lossy(&p.client_head).to_ascii_lowercase();
            prop_assert!(text.matches("content-length").count() <= 1);
            prop_assert!(!(text.contains("content-length") && text.contains("transfer-encoding: chunked")));
        }
    }
}

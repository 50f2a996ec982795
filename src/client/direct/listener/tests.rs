//! The listener over loopback, end to end: a sender's message arrives, a captured or raw
//! line is refused, slow connections close at the deadline, and admission keeps room for
//! paired peers. Its own file because each test drives real sockets and threads.

use super::*;
use crate::client::direct::{parse_greeting, send, Peer, Secret, SendError, TIMEOUT};

const SECRET: Secret = [7u8; 32];

/// A listener on a free port for `me`, with `book`; returns its port and the events.
fn listener(me: &str, book: &Book) -> (u16, crossbeam_channel::Receiver<ClientEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let port = listen(0, me, book, &tx).expect("listen");
    (port, rx)
}

#[test]
fn a_message_goes_from_sender_to_listener() {
    let book = Book::default();
    let peer = Peer {
        address: "127.0.0.1:0".into(),
        secret: SECRET,
    };
    book.insert("alice", peer.clone());
    let (port, events) = listener("bob", &book);
    let bob = Peer {
        address: format!("127.0.0.1:{port}"),
        ..peer
    };
    send(&bob, "alice", "bob", "hi \x1b there").expect("delivered");
    match events.recv_timeout(TIMEOUT).expect("an event") {
        ClientEvent::Direct { from, text } => {
            assert_eq!(from, "alice");
            assert_eq!(text, "hi \x1b there");
        }
        other => panic!("{other:?}"),
    }
    // Addressed to someone else: the MAC does not fit.
    let e = send(&bob, "alice", "carol", "hi").unwrap_err();
    assert!(
        matches!(&e, SendError::Refused { code, .. } if code == "refused"),
        "{e}"
    );
    // Not in the book.
    let e = send(&bob, "mallory", "bob", "hi").unwrap_err();
    assert!(
        matches!(&e, SendError::Refused { code, .. } if code == "refused"),
        "{e}"
    );
    assert!(events.try_recv().is_err());
}

#[test]
fn a_captured_message_shows_no_text_and_replayed_it_is_refused() {
    let book = Book::default();
    book.insert(
        "alice",
        Peer {
            address: "127.0.0.1:0".into(),
            secret: SECRET,
        },
    );
    let (port, events) = listener("bob", &book);
    // A relay that keeps what the sender sends: a classmate on the path.
    let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let capture = std::thread::spawn(move || {
        let (mut from_sender, _) = relay.accept().unwrap();
        let mut to_listener = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut back = to_listener.try_clone().unwrap();
        let mut sender_side = from_sender.try_clone().unwrap();
        let answers = std::thread::spawn(move || {
            let _ = std::io::copy(&mut back, &mut sender_side);
        });
        from_sender.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = from_sender.read(&mut chunk) {
            seen.extend_from_slice(&chunk[..n]);
            to_listener.write_all(&chunk[..n]).unwrap();
        }
        let _ = to_listener.shutdown(std::net::Shutdown::Write);
        answers.join().unwrap();
        seen
    });
    let via_relay = Peer {
        address: format!("127.0.0.1:{relay_port}"),
        secret: SECRET,
    };
    send(&via_relay, "alice", "bob", "the answer is 42").expect("delivered");
    match events.recv_timeout(TIMEOUT).expect("an event") {
        ClientEvent::Direct { text, .. } => assert_eq!(text, "the answer is 42"),
        other => panic!("{other:?}"),
    }
    let captured = String::from_utf8(capture.join().unwrap()).unwrap();
    assert!(captured.starts_with("PRIVATE alice "), "{captured}");
    assert!(
        !captured.contains("answer"),
        "the text crossed in clear: {captured}"
    );
    // The recorded line, replayed on a new connection, opens nothing.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(matches!(read_line(&mut s, 100).unwrap(), LineRead::Line(_)));
    s.write_all(captured.as_bytes()).unwrap();
    match read_line(&mut s, 200).unwrap() {
        LineRead::Line(reply) => {
            let reply = String::from_utf8(reply).unwrap();
            assert!(reply.starts_with("ERR refused "), "{reply}");
        }
        other => panic!("{other:?}"),
    }
    assert!(events.try_recv().is_err(), "a replayed message was shown");
}

#[test]
fn raw_lines_are_refused() {
    let book = Book::default();
    let (port, events) = listener("bob", &book);
    let exchange = |line: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let greeting = read_line(&mut s, 100).unwrap();
        let LineRead::Line(greeting) = greeting else {
            panic!("{greeting:?}")
        };
        assert!(parse_greeting(std::str::from_utf8(&greeting).unwrap()).is_some());
        s.write_all(line).unwrap();
        match read_line(&mut s, 100).unwrap() {
            LineRead::Line(reply) => String::from_utf8(reply).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert!(exchange(b"HELLO\n").starts_with("ERR bad-request "));
    assert!(exchange(b"PRIVATE alice \xff\n").starts_with("ERR bad-request "));
    let zeros = "0".repeat(64);
    let spoof = format!("PRIVATE alice {zeros} hi\n");
    assert!(exchange(spoof.as_bytes()).starts_with("ERR refused "));
    let long = format!("PRIVATE alice {zeros} {}\n", "x".repeat(MAX_LINE_BYTES));
    assert!(exchange(long.as_bytes()).starts_with("ERR too-long "));
    assert!(events.try_recv().is_err());
}

/// Reads until the listener closes `stream`; how long that took from `since`.
fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    stream
        .set_read_timeout(Some(DEADLINE + DRAIN + Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_deadline() {
    let (port, _events) = listener("bob", &Book::default());
    let opened = Instant::now();
    let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let took = closed_after(idle, opened);
    assert!(
        took >= DEADLINE - Duration::from_millis(100) && took < DEADLINE + DRAIN,
        "closed after {took:?}"
    );
}

#[test]
fn a_connection_that_trickles_a_byte_at_a_time_is_closed_at_the_deadline() {
    let (port, _events) = listener("bob", &Book::default());
    let opened = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let reader = slow.try_clone().unwrap();
    let closed = std::thread::spawn(move || closed_after(reader, opened));
    for _ in 0..40 {
        if slow.write_all(b"P").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = closed.join().unwrap();
    assert!(took < DEADLINE + DRAIN, "closed after {took:?}");
}

/// A connection to `port` on 127.0.0.1 from `from` (another loopback address), once it
/// has its greeting (so it is being served).
fn served_from(from: [u8; 4], port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let greeting = read_line(&mut stream, 100).unwrap();
    assert!(matches!(greeting, LineRead::Line(_)), "{greeting:?}");
    stream
}

#[test]
fn when_every_place_is_taken_a_paired_peer_still_gets_through() {
    let book = Book::default();
    let alice = Peer {
        address: "127.0.0.1:9".into(),
        secret: SECRET,
    };
    book.insert("alice", alice.clone());
    let (port, events) = listener("bob", &book);
    let AdmissionLimits {
        max_open,
        per_address,
    } = AdmissionLimits::DEFAULT;
    // Eight other addresses take every place.
    let crowd: Vec<TcpStream> = (0..max_open)
        .map(|i| served_from([127, 0, 0, 2 + (i / per_address) as u8], port))
        .collect();
    let bob = Peer {
        address: format!("127.0.0.1:{port}"),
        ..alice
    };
    send(&bob, "alice", "bob", "still here").expect("delivered");
    match events.recv_timeout(TIMEOUT).expect("an event") {
        ClientEvent::Direct { from, text } => {
            assert_eq!((from.as_str(), text.as_str()), ("alice", "still here"))
        }
        other => panic!("{other:?}"),
    }
    // The place was made by closing the crowd's oldest connection, at once.
    let took = closed_after(crowd.into_iter().next().unwrap(), Instant::now());
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
}

#[test]
fn connections_past_one_addresss_share_are_closed_at_once() {
    let (port, _events) = listener("bob", &Book::default());
    let per_address = AdmissionLimits::DEFAULT.per_address;
    let held: Vec<TcpStream> = (0..per_address)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Each gets its greeting: served.
    for stream in &held {
        let mut stream = stream;
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        assert!(matches!(read_line(&mut stream, 100), Ok(LineRead::Line(_))));
    }
    let opened = Instant::now();
    let extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let took = closed_after(extra, opened);
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
}

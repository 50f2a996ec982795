use super::*;
use crate::server::encoder::NativeEncoder;
use socket2::SockRef;

fn mail(text: &str) -> Arc<Mail> {
    Arc::new(Mail {
        from: "alice".into(),
        sent_at: 0,
        kind: crate::store::MailKind::Private,
        text: text.into(),
        id: crate::store::new_mail_id(),
    })
}

#[test]
fn a_send_in_flight_keeps_order_with_what_is_appended_meanwhile() {
    let mut outbox = Outbox::default();
    outbox.push(b"one\n");
    outbox.rescue.push_back((outbox.queued, mail("one")));
    outbox.push(b"two\n");
    outbox.rescue.push_back((outbox.queued, mail("two")));
    let (chunk, start) = outbox.take_for_send();
    assert!(!outbox.is_empty(), "a send in flight counts as pending");
    assert_eq!(outbox.pending_len(), 8);
    // Appended while the bytes are out: goes behind them.
    outbox.push(b"three\n");
    // Only "one\n" and half of "two\n" made it.
    outbox.put_back(chunk, start, 6);
    assert_eq!(&outbox.buf[outbox.start..], b"o\nthree\n");
    assert_eq!(outbox.written, 6);
    let left: Vec<&str> = outbox.rescue.iter().map(|(_, m)| &*m.text).collect();
    assert_eq!(
        left,
        ["two"],
        "the message fully written is no longer rescued"
    );

    // The rest goes out whole: the outbox is empty and its rescues gone.
    let (chunk, start) = outbox.take_for_send();
    let n = chunk.len() - start;
    outbox.put_back(chunk, start, n);
    assert!(outbox.is_empty());
    assert!(outbox.rescue.is_empty());
    assert_eq!(outbox.written, outbox.queued);
}

#[test]
fn a_client_that_stopped_reading_does_not_hold_up_the_flusher_for_the_others() {
    use std::io::Read;
    use std::net::TcpListener;
    // The flusher waits a minute on full sockets here: only its wake-up ends it sooner.
    let flusher = Flusher::with_poll_timeout(Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = flusher.spawn(Arc::clone(&stop)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let limits = Limits {
        outbox_bytes: 64 << 20,
        stall: Duration::from_secs(120),
    };
    let connect = |id| {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let _ = SockRef::from(&server).set_send_buffer_size(4096);
        let conn = Conn::new(id, server, peer, &flusher, limits, Box::new(NativeEncoder));
        (conn, client)
    };
    let (stalled, _never_read) = connect(1);
    let (other, mut other_client) = connect(2);
    // Far more than the sockets hold: the flusher is left waiting on this one.
    let big = Line::info("n", "x".repeat(4000));
    for _ in 0..1000 {
        assert!(stalled.queue_shared(&big, &big.to_wire(), None));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        stalled.outbox.lock().pending_len() > 0,
        "the socket is full"
    );

    let line = Line::info("n", "for the others");
    assert!(other.queue_shared(&line, &line.to_wire(), None));
    other_client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = vec![0u8; 64];
    let n = other_client
        .read(&mut got)
        .expect("written long before the flusher's minute-long wait ends");
    assert_eq!(&got[..n], b"INFO n for the others\n");

    stalled.close();
    stop.store(true, Ordering::Release);
    thread.join().unwrap();
}

#[test]
fn many_threads_queueing_while_the_flusher_sends_lose_and_reorder_nothing() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    let flusher = Flusher::new();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = flusher.spawn(Arc::clone(&stop)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    // A small send buffer, so sends are partial and would block now and then.
    let _ = SockRef::from(&server).set_send_buffer_size(4096);
    let limits = Limits {
        outbox_bytes: 64 << 20,
        stall: Duration::from_secs(10),
    };
    let conn = Conn::new(9, server, peer, &flusher, limits, Box::new(NativeEncoder));
    const SENDERS: usize = 4;
    const LINES: usize = 3000;
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || {
                for i in 0..LINES {
                    let line = Line::info("n", format!("{t} {i}"));
                    // Every path: written at once when nothing waits, queued for the
                    // flusher, or queued and flushed by this thread (as a login does).
                    match i % 3 {
                        0 => assert!(conn.send(&line)),
                        1 => assert!(conn.queue_shared(&line, &line.to_wire(), None)),
                        _ => {
                            let text = format!("{t} {i}");
                            conn.enqueue_all(&[crate::server::rules::ChatEvent::Message {
                                from: "n".into(),
                                text,
                                notice: false,
                            }]);
                            conn.flush_now();
                        }
                    }
                }
            })
        })
        .collect();
    let mut reader = BufReader::new(client);
    reader
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut next = [0usize; SENDERS];
    let mut line = String::new();
    for _ in 0..SENDERS * LINES {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let mut words = line.split_whitespace().skip(2);
        let t: usize = words.next().unwrap().parse().unwrap();
        let i: usize = words.next().unwrap().parse().unwrap();
        assert_eq!(
            i, next[t],
            "sender {t}'s lines in order, none lost or repeated"
        );
        next[t] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(next, [LINES; SENDERS]);
    stop.store(true, Ordering::Release);
    thread.join().unwrap();
}

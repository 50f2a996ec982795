//! The socket reader thread: turns the server's bytes into [`ClientEvent`]s, one per line, and
//! ends with [`ClientEvent::Disconnected`]. A line longer than [`MAX_LINE_BYTES`] comes in pieces.
//!
//! What it does not do: act on a line (the main loop does) or write to the server.

use super::ClientEvent;
use crate::protocol::Line;
use crossbeam_channel::Sender;
use std::io::{self, BufRead, BufReader, Read};

/// Longest server line read in one piece; a longer one is shown in pieces.
const MAX_LINE_BYTES: u64 = 1 << 20;

/// The most lines of prose before `HELLO` kept, to be shown if the server closes before it.
const MAX_PROSE_LINES: usize = 20;

/// Starts the thread that turns the server's bytes into [`ClientEvent`]s, ending with
/// [`ClientEvent::Disconnected`]. What comes before the first `HELLO` is the prose greeting for
/// people: skipped, unless the server closes before `HELLO` (a refusal), when it is shown.
pub(super) fn spawn_reader(
    socket: Box<dyn Read + Send>,
    events: Sender<ClientEvent>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("socket".into())
        .spawn(move || {
            let mut reader = BufReader::new(socket);
            let mut buf = Vec::new();
            let mut prose: Option<Vec<String>> = Some(Vec::new());
            loop {
                buf.clear();
                let event = match (&mut reader)
                    .take(MAX_LINE_BYTES)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) => {
                        for text in prose.take().unwrap_or_default() {
                            let _ = events.send(ClientEvent::Unknown(text));
                        }
                        ClientEvent::Disconnected(None)
                    }
                    Ok(_) => {
                        let text = trim_line_end(String::from_utf8_lossy(&buf).into_owned());
                        if let Some(skipped) = prose.as_mut() {
                            if !text.starts_with("HELLO ") {
                                if skipped.len() < MAX_PROSE_LINES && !text.trim().is_empty() {
                                    skipped.push(text);
                                }
                                continue;
                            }
                            prose = None;
                        }
                        if text.is_empty() {
                            continue;
                        }
                        match Line::parse(&text) {
                            Some(line) => ClientEvent::Server(line),
                            None => ClientEvent::Unknown(text),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => ClientEvent::Disconnected(Some(e)),
                };
                let last = matches!(event, ClientEvent::Disconnected(_));
                if events.send(event).is_err() || last {
                    return;
                }
            }
        })
        .map(drop)
}

/// Removes a trailing LF or CRLF.
pub(crate) fn trim_line_end(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings() {
        assert_eq!(trim_line_end("a\r\n".into()), "a");
        assert_eq!(trim_line_end("a\n".into()), "a");
        assert_eq!(trim_line_end("a".into()), "a");
        assert_eq!(trim_line_end("a\r".into()), "a\r");
    }
}

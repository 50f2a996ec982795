//! The keyboard thread: reads what the user types and hands it to the main loop as events.
//!
//! During the login dialogue it reads one line per [`ReadRequest::Ask`] from the main loop (so a
//! password is read with echo off only when the server asked for a password, and piped
//! input is consumed in step with the server's questions); after login it reads lines
//! freely until end of input or Ctrl-C.
//!
//! Two ways to read: a rustyline editor when standard input and output are terminals
//! (history, editing, and incoming lines printed above the prompt), or plain lines otherwise.
//! This thread never writes to the socket and never decides anything; it may stay blocked in
//! a read when the process exits, which is fine.

use super::charset::Charset;
use super::{sys, ClientEvent};
use crossbeam_channel::{Receiver, Sender};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use std::io::{self, BufRead};

/// What the main loop wants read next.
#[derive(Debug)]
pub(crate) enum ReadRequest {
    /// One answer to a server question (`ASK`). `prompt` is shown by the editor; in plain
    /// mode the main loop has printed the question already.
    Ask {
        /// The question, e.g. `Username: `.
        prompt: String,
        /// Read with echo off (a password), when standard input is a terminal.
        secret: bool,
    },
    /// Logged in: read lines until the input ends, showing `prompt` in the editor.
    Free {
        /// The command prompt, e.g. `lanchat> `.
        prompt: String,
    },
}

/// Where typed lines come from.
pub(crate) enum Keyboard {
    /// A line editor on a terminal.
    Editor(Box<DefaultEditor>),
    /// Plain lines from standard input; `tty` says whether secrets can be read with echo off.
    Plain {
        /// Standard input is a terminal.
        tty: bool,
        /// What the typed bytes are in.
        charset: Charset,
    },
}

/// One read's outcome.
enum Read {
    Line(String),
    End,
    Interrupted,
}

/// Starts the keyboard thread.
pub(crate) fn spawn(
    keyboard: Keyboard,
    requests: Receiver<ReadRequest>,
    events: Sender<ClientEvent>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("keyboard".into())
        .spawn(move || run(keyboard, requests, events))
        .map(drop)
}

fn run(mut keyboard: Keyboard, requests: Receiver<ReadRequest>, events: Sender<ClientEvent>) {
    for request in requests.iter() {
        let (prompt, secret, free) = match request {
            ReadRequest::Ask { prompt, secret } => (prompt, secret, false),
            ReadRequest::Free { prompt } => (prompt, false, true),
        };
        loop {
            let event = match read(&mut keyboard, &prompt, secret, free) {
                Read::Line(line) => ClientEvent::Typed(line),
                Read::End => ClientEvent::EndOfInput,
                Read::Interrupted => ClientEvent::Interrupted,
            };
            let last = !matches!(event, ClientEvent::Typed(_));
            if events.send(event).is_err() || last {
                return;
            }
            if !free {
                break;
            }
        }
    }
}

/// Reads one line; `remember` adds it to the editor's history (commands, not login answers).
fn read(keyboard: &mut Keyboard, prompt: &str, secret: bool, remember: bool) -> Read {
    match keyboard {
        Keyboard::Editor(_) | Keyboard::Plain { tty: true, .. } if secret => {
            if let Keyboard::Editor(_) = keyboard {
                use std::io::Write;
                let mut out = io::stdout().lock();
                let _ = out.write_all(prompt.as_bytes());
                let _ = out.flush();
            }
            let charset = match keyboard {
                Keyboard::Plain { charset, .. } => *charset,
                Keyboard::Editor(_) => Charset::UTF8,
            };
            match sys::read_hidden_line(charset) {
                Ok(Some(line)) => Read::Line(line),
                Ok(None) => Read::End,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Read::Interrupted,
                Err(e) => {
                    log::warn!("cannot read the password: {e}");
                    Read::End
                }
            }
        }
        Keyboard::Editor(editor) => match editor.readline(prompt) {
            Ok(line) => {
                if remember && !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                Read::Line(line)
            }
            Err(ReadlineError::Interrupted) => Read::Interrupted,
            Err(ReadlineError::Eof) => Read::End,
            Err(e) => {
                log::warn!("cannot read the keyboard: {e}");
                Read::End
            }
        },
        Keyboard::Plain { charset, .. } => {
            // Bytes, not a String: a line in the terminal's charset is not UTF-8.
            let mut line = Vec::new();
            match io::stdin().lock().read_until(b'\n', &mut line) {
                Ok(0) => Read::End,
                Ok(_) => {
                    if line.ends_with(b"\n") {
                        line.pop();
                        if line.ends_with(b"\r") {
                            line.pop();
                        }
                    }
                    Read::Line(charset.decode(&line))
                }
                Err(e) => {
                    log::warn!("cannot read standard input: {e}");
                    Read::End
                }
            }
        }
    }
}

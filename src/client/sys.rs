//! What the client needs from the system beyond std: its terminal settings through
//! [`crate::terminal`] (the hidden password, and restoring the terminal on every exit path)
//! and the local time zone offset (`localtime_r`, so stamps show in local time without a
//! time-zone crate: the client's only unsafe code of its own).
//!
//! Unix only, like the rest of the client's terminal handling.

use crate::terminal::{EchoOff, Settings};
use std::io::{self, BufRead, Write};

/// The local time zone's offset from UTC, in seconds, at Unix time `secs` (so summer time
/// is right for each stamp). `None` if the C library cannot tell.
#[allow(unsafe_code)]
pub(crate) fn utc_offset_at(secs: u64) -> Option<i64> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: `tm` is a plain C struct (its one pointer field may be null) that we own;
    // localtime_r is the reentrant form: it reads `t` and writes only into `tm`, and returns
    // null on failure, which we check before reading `tm`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    // `c_long` is `i64` on 64-bit Unix and `i32` elsewhere.
    #[allow(clippy::useless_conversion)]
    Some(i64::from(tm.tm_gmtoff))
}

/// The terminal settings standard input had when the client started, put back when this is
/// dropped (or by [`SavedTerminal::restore_and_wipe`]): after a hidden password read, or when the process
/// leaves while the line editor has the terminal in raw mode on another thread.
pub(crate) struct SavedTerminal {
    /// What to put back; `None` when standard input is not a terminal.
    saved: Option<Settings>,
    /// Whether a line editor draws prompts (standard output is a terminal too).
    editor: bool,
}

impl SavedTerminal {
    /// Remembers standard input's settings, if it is a terminal. `editor` says whether a
    /// line editor will draw prompts, which the way out then has to deal with.
    pub(crate) fn save(editor: bool) -> SavedTerminal {
        SavedTerminal {
            saved: Settings::of_stdin().ok(),
            editor,
        }
    }

    /// Puts the saved settings back and, in editor mode, wipes the prompt line, so that a
    /// final line from the server replaces it. Safe to call more than once.
    pub(crate) fn restore_and_wipe(&mut self) {
        self.restore(b"\r\x1b[K");
    }

    /// Puts the saved settings back; in editor mode writes `tail` (which moves the cursor
    /// to where the next output should start).
    fn restore(&mut self, tail: &[u8]) {
        if let Some(saved) = self.saved.take() {
            if let Err(e) = saved.apply() {
                log::warn!("cannot restore the terminal: {e}");
            }
            if self.editor {
                let mut out = io::stdout().lock();
                let _ = out.write_all(tail);
                let _ = out.flush();
            }
        }
    }
}

impl Drop for SavedTerminal {
    /// Leaves whatever prompt or typing is on screen and starts a new line for anything
    /// printed after (an error, the shell's prompt).
    fn drop(&mut self) {
        self.restore(b"\r\n");
    }
}

/// Reads one line from standard input (a terminal) with echo off: for passwords. The user's
/// Enter is still echoed (ECHONL) so the next output starts on a new line. The settings are
/// put back before returning; if the process is interrupted meanwhile, [`SavedTerminal`] puts
/// them back. Returns `None` at end of input (Ctrl-D).
pub(crate) fn read_hidden_line(charset: super::charset::Charset) -> io::Result<Option<String>> {
    let echo = EchoOff::on_stdin()?;
    let read = read_line_ending_in_cr_or_lf(&mut io::stdin().lock());
    if let Err(e) = echo.restore() {
        log::warn!("cannot turn echo back on: {e}");
    }
    Ok(read?.map(|bytes| charset.decode(&bytes)))
}

/// Reads up to a CR, LF or CRLF. A password typed ahead while the line editor still had the
/// terminal in raw mode ends in a bare CR (raw mode does not turn CR into LF), and would
/// otherwise wait for a second Enter.
fn read_line_ending_in_cr_or_lf(input: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            if bytes.is_empty() {
                return Ok(None);
            }
            break;
        }
        match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) => {
                bytes.extend_from_slice(&buf[..i]);
                let crlf = buf[i] == b'\r' && buf.get(i + 1) == Some(&b'\n');
                input.consume(i + if crlf { 2 } else { 1 });
                break;
            }
            None => {
                bytes.extend_from_slice(buf);
                let n = buf.len();
                input.consume(n);
            }
        }
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_lines_end_at_cr_lf_or_crlf() {
        let mut input = io::Cursor::new(&b"one\rtwo\nthree\r\nfour"[..]);
        let mut next = || read_line_ending_in_cr_or_lf(&mut input).unwrap();
        assert_eq!(next().as_deref(), Some(&b"one"[..]));
        assert_eq!(next().as_deref(), Some(&b"two"[..]));
        assert_eq!(next().as_deref(), Some(&b"three"[..]));
        assert_eq!(next().as_deref(), Some(&b"four"[..]));
        assert_eq!(next(), None);
    }
}

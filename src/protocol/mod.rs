//! The wire format, as pure functions: parsing what a user types into a [`Command`], and
//! formatting/parsing what the server sends as a [`Line`]. No I/O happens here.
//!
//! Client to server: one command per line, UTF-8, LF or CRLF. The first word is the command,
//! case-insensitive, optionally prefixed with `/`; each course project's own spelling is an
//! alias (`online`/`who`/`whoelse`, `message`/`send`, `log out`/`exit`/`quit`/`logout`, ...).
//!
//! Server to client: every line is `KIND` followed by a fixed number of space-free arguments
//! for that kind and then free text (possibly empty), e.g. `MSG alice hello there`. The kind
//! and arguments are for programs; the text is for people. `PROTOCOL.md` is the reference.
//!
//! User-provided text is sanitized on the way in ([`sanitize_text`]): control characters are
//! escaped so that nothing a user types can drive another user's terminal.

mod command;
mod line;
mod parse;
mod text;

pub use command::{Audience, Command, GroupAction, Status};
pub use line::{Kind, Line};
pub use parse::{is_session_command, parse_command, ParseError, DEFAULT_HISTORY_LINES};
pub use text::{is_unsafe_char, sanitize, sanitize_text, valid_username, MAX_NAME_LEN};

//! Where the client's output goes: standard output a line at a time, or above the line
//! editor's prompt without disturbing what is being typed; and whether to edit lines at all.
//!
//! What it does not do: decide what a line says (`render` does) or read the keyboard
//! (`input` does).

use super::charset::Charset;
use std::ffi::OsStr;
use std::io::{self, Write};

/// Terminals the line editor cannot drive (rustyline's own list of unsupported ones).
const PLAIN_TERMS: &[&str] = &["dumb", "cons25", "emacs"];

/// Whether to edit lines: on a terminal (standard input and output), in UTF-8 (the editor
/// reads and writes nothing else), whose `TERM` can move a cursor. Otherwise plain lines are
/// read, quietly: a `TERM=dumb` user asked for exactly that.
pub(super) fn line_editing(on_terminal: bool, utf8: bool, term: Option<&OsStr>) -> bool {
    on_terminal && utf8 && term.is_none_or(|t| !PLAIN_TERMS.iter().any(|p| t == *p))
}

/// A line editor and a printer that writes above its prompt.
pub(super) fn editor() -> rustyline::Result<(
    Box<dyn rustyline::ExternalPrinter + Send>,
    rustyline::DefaultEditor,
)> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let printer = editor.create_external_printer()?;
    Ok((Box::new(printer), editor))
}

/// Where rendered lines go.
pub(super) enum Screen {
    /// Standard output, one line at a time.
    Plain,
    /// Above the line editor's prompt, without disturbing what is being typed.
    Editor(Box<dyn rustyline::ExternalPrinter + Send>),
}

impl Screen {
    /// Shows one line, in `charset` when written directly (the editor is used only with
    /// UTF-8).
    pub(super) fn show(&mut self, text: &str, charset: Charset) -> io::Result<()> {
        match self {
            Screen::Plain => {
                let mut out = io::stdout().lock();
                out.write_all(&charset.encode(text))?;
                out.write_all(b"\n")?;
                out.flush()
            }
            Screen::Editor(printer) => printer
                .print(format!("{text}\n"))
                .map_err(|e| io::Error::other(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_editing_only_where_the_terminal_can_do_it() {
        let term = |t: &'static str| Some(OsStr::new(t));
        assert!(line_editing(true, true, term("xterm-256color")));
        assert!(line_editing(true, true, None));
        assert!(!line_editing(true, true, term("dumb")));
        assert!(!line_editing(true, true, term("emacs")));
        assert!(!line_editing(false, true, term("xterm")));
        assert!(!line_editing(true, false, term("xterm")));
    }
}

//! Terminal settings (termios): hiding what is typed (a password) and putting the settings
//! back. The one place in lanchat that calls `tcgetattr`/`tcsetattr`: the client (its hidden
//! password, and restoring the terminal the line editor left raw on every way out) and the
//! server binary (`add-user`'s password prompt) both use it.
//!
//! Ours, not `rpassword`: that crate reads the password from `/dev/tty` instead of standard
//! input, ends it only at LF (a password typed ahead while the line editor still had the
//! terminal raw ends in a bare CR), and the client would still need these two calls to put
//! the terminal back, so no unsafe code would go.
//!
//! What it does not do: raw mode or line editing (rustyline does), or read anything.

use std::io;
use std::os::fd::RawFd;

/// Standard input's file descriptor.
pub const STDIN: RawFd = 0;

/// One terminal's settings, as read at some moment, ready to be put back.
#[derive(Clone, Copy)]
pub struct Settings {
    /// The terminal they belong to.
    fd: RawFd,
    /// The settings themselves.
    termios: libc::termios,
}

impl Settings {
    /// The settings of the terminal `fd`; an error if `fd` is not a terminal.
    #[allow(unsafe_code)]
    pub fn of(fd: RawFd) -> io::Result<Settings> {
        // SAFETY: `termios` is a plain C struct for which all-zero bytes are a valid value;
        // tcgetattr only reads `fd` and writes the struct we own, passed by pointer for the
        // duration of the call. Failure comes back as -1 and errno.
        unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut termios) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Settings { fd, termios })
        }
    }

    /// Standard input's settings.
    pub fn of_stdin() -> io::Result<Settings> {
        Settings::of(STDIN)
    }

    /// Makes these the terminal's settings again, at once.
    #[allow(unsafe_code)]
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: tcsetattr only reads `fd` and the struct we own, passed by pointer for the
        // duration of the call. Failure comes back as -1 and errno.
        if unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.termios) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// These settings with typed characters not echoed, except Enter (ECHONL), so the next
    /// output starts on a line of its own.
    fn hiding_echo(&self) -> Settings {
        let mut quiet = *self;
        quiet.termios.c_lflag &= !libc::ECHO;
        quiet.termios.c_lflag |= libc::ECHONL;
        quiet
    }
}

/// Echo switched off on a terminal until [`EchoOff::restore`] or drop puts the settings
/// from before back.
pub struct EchoOff {
    /// What to put back; `None` once put back.
    before: Option<Settings>,
}

impl EchoOff {
    /// Switches echo off on the terminal `fd` (Enter is still echoed).
    pub fn on(fd: RawFd) -> io::Result<EchoOff> {
        let before = Settings::of(fd)?;
        before.hiding_echo().apply()?;
        Ok(EchoOff {
            before: Some(before),
        })
    }

    /// Switches echo off on standard input.
    pub fn on_stdin() -> io::Result<EchoOff> {
        EchoOff::on(STDIN)
    }

    /// Puts the settings from before back, saying whether that worked (drop does it too,
    /// silently).
    pub fn restore(mut self) -> io::Result<()> {
        self.before.take().map_or(Ok(()), |before| before.apply())
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(before) = self.before.take() {
            let _ = before.apply();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, OpenOptions};
    use std::os::fd::AsRawFd;

    /// A new pseudo-terminal: its controller and the terminal end.
    #[allow(unsafe_code)]
    fn pty() -> (File, File) {
        use std::os::fd::FromRawFd;
        // SAFETY: posix_openpt returns a new descriptor we own (or -1, checked); grantpt,
        // unlockpt and ptsname_r only act on it and write into the buffer we pass with its
        // length.
        unsafe {
            let controller = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(controller >= 0, "{}", io::Error::last_os_error());
            let controller = File::from_raw_fd(controller);
            assert_eq!(libc::grantpt(controller.as_raw_fd()), 0);
            assert_eq!(libc::unlockpt(controller.as_raw_fd()), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(
                libc::ptsname_r(controller.as_raw_fd(), name.as_mut_ptr(), name.len()),
                0
            );
            let path = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap();
            let terminal = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            (controller, terminal)
        }
    }

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        Settings::of(fd).unwrap().termios.c_lflag
    }

    #[test]
    fn echo_is_off_but_enter_still_echoed_until_restored() {
        let (_controller, terminal) = pty();
        let fd = terminal.as_raw_fd();
        let before = lflag(fd);
        assert_ne!(before & libc::ECHO, 0, "a new terminal echoes");
        let echo = EchoOff::on(fd).unwrap();
        assert_eq!(lflag(fd) & libc::ECHO, 0);
        assert_ne!(lflag(fd) & libc::ECHONL, 0);
        echo.restore().unwrap();
        assert_eq!(lflag(fd), before);
    }

    #[test]
    fn dropping_the_guard_puts_the_settings_back() {
        let (_controller, terminal) = pty();
        let fd = terminal.as_raw_fd();
        let before = lflag(fd);
        let echo = EchoOff::on(fd).unwrap();
        assert_eq!(lflag(fd) & libc::ECHO, 0);
        drop(echo);
        assert_eq!(lflag(fd), before);
    }

    #[test]
    fn a_file_that_is_no_terminal_is_an_error() {
        let file = tempfile::tempfile().unwrap();
        assert!(EchoOff::on(file.as_raw_fd()).is_err());
        assert!(Settings::of(file.as_raw_fd()).is_err());
    }
}

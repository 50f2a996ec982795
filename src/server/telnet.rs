//! Telnet on the native door, as a pure filter: the commands a telnet client mixes into its
//! input are taken out before lines are split, answered where the protocol expects an
//! answer, and used for one thing only: hiding a password as it is typed.
//!
//! The rule that tells a telnet client from `nc` or a program: a connection speaks telnet
//! if, and only if, the first byte it sends is IAC (0xFF). A telnet client that negotiates
//! does so at once, before anything is typed; UTF-8 text never contains 0xFF, so no person
//! at `nc` and no program is ever taken for telnet. (Watching for an IAC command anywhere
//! would be wrong: `0xFF 0xFE` in a line of Latin-1 or binary from `nc` reads as
//! `IAC DONT`, and answering it would send telnet bytes to `nc`.) A connection that does
//! not start with IAC gets its bytes untouched for its whole life (a stray 0xFF makes its
//! line not UTF-8, refused as before). One that does has, for its whole life, removed:
//!
//! - `IAC IAC`: one data byte 0xFF;
//! - `IAC WILL|WONT|DO|DONT <option>`: option negotiation (answered, see below);
//! - `IAC SB ... IAC SE`: subnegotiation (dropped, never buffered);
//! - `IAC <any other command>` (NOP, GA, AYT, IP, ...): dropped;
//! - the NUL of `CR NUL` (telnet's bare carriage return).
//!
//! `inetutils` and BSD `telnet` negotiate when given a port with a leading `-`
//! (`telnet HOST -4119`); on a port other than 23 without it they send nothing telnet at
//! first, and are then treated like `nc` (a password is echoed as typed).
//!
//! Negotiation: the server wants no option except ECHO, and that only while a password is
//! typed. It refuses whatever the client offers (`WILL x` gets `DONT x`) or asks for
//! (`DO x` gets `WONT x`), so the client stays in its default line mode, editing and
//! echoing locally. Before the password prompt it says `IAC WILL ECHO`; a line-mode client
//! answers `DO ECHO` and stops echoing what is typed (the server echoes nothing either), and
//! after the password line the server says `IAC WONT ECHO` and ends the line the user's
//! unechoed Enter left open. Nothing telnet is ever sent to a connection that has not
//! spoken telnet first: `nc` never sees a 0xFF byte.
//!
//! ```text
//!   ECHO:  Off ──hide_echo──► Asked ──DO ECHO──► On
//!           ▲                   │DONT ECHO         │DONT ECHO (answered WONT ECHO)
//!           ├───────────────────┘                  │
//!           └──────────────show_echo───────────────┘  (from Asked or On: WONT ECHO)
//! ```

/// Interpret As Command: starts every telnet command.
pub const IAC: u8 = 0xFF;
/// `IAC DONT <option>`: asks the other side not to use an option.
pub const DONT: u8 = 0xFE;
/// `IAC DO <option>`: asks the other side to use an option.
pub const DO: u8 = 0xFD;
/// `IAC WONT <option>`: refuses, or stops using, an option.
pub const WONT: u8 = 0xFC;
/// `IAC WILL <option>`: offers to use an option.
pub const WILL: u8 = 0xFB;
/// `IAC SB`: subnegotiation begins.
pub const SB: u8 = 0xFA;
/// `IAC SE`: subnegotiation ends.
pub const SE: u8 = 0xF0;
/// The ECHO option (RFC 857).
pub const ECHO: u8 = 1;

/// Where the filter is in the input, between two reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FilterState {
    /// Plain data.
    Data,
    /// After an IAC.
    Iac,
    /// After `IAC WILL|WONT|DO|DONT`: the option byte comes next.
    Option(u8),
    /// Inside `IAC SB ...`.
    Sub,
    /// Inside a subnegotiation, after an IAC.
    SubIac,
    /// After a CR (telnet sends `CR NUL` for a bare carriage return).
    Cr,
}

/// Whether the server is echoing for the client, as far as it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Echo {
    /// No: the client echoes (the default).
    Off,
    /// `WILL ECHO` sent, no answer yet.
    Asked,
    /// The client agreed (`DO ECHO`): it does not echo.
    On,
}

/// One connection's telnet state: the input filter and the ECHO option.
#[derive(Debug)]
pub struct Telnet {
    /// Whether the first byte has arrived, so `active` is known.
    decided: bool,
    /// Whether the peer speaks telnet: its first byte was IAC (see the module's rule).
    active: bool,
    /// The position inside a command split across reads.
    state: FilterState,
    /// The ECHO option.
    echo: Echo,
}

impl Default for Telnet {
    fn default() -> Telnet {
        Telnet {
            decided: false,
            active: false,
            state: FilterState::Data,
            echo: Echo::Off,
        }
    }
}

impl Telnet {
    /// Whether the peer has spoken telnet.
    #[cfg(test)]
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether the next bytes read, `input`, must go through [`Telnet::filter`]: the first
    /// bytes of the connection decide it for good (the usual connection, not telnet, then
    /// costs nothing more).
    pub fn needs_filter(&mut self, input: &[u8]) -> bool {
        if !self.decided && !input.is_empty() {
            self.decided = true;
            self.active = input[0] == IAC;
        }
        self.active
    }

    /// Appends `input` without its telnet commands to `data`, and the answers the
    /// negotiation needs to `replies`. Only for a connection that speaks telnet (see
    /// [`Telnet::needs_filter`]).
    pub fn filter(&mut self, input: &[u8], data: &mut Vec<u8>, replies: &mut Vec<u8>) {
        for &b in input {
            self.state = match self.state {
                FilterState::Data => self.data(b, data),
                FilterState::Cr if b == 0 => FilterState::Data,
                FilterState::Cr => self.data(b, data),
                FilterState::Iac => match b {
                    IAC => {
                        data.push(IAC);
                        FilterState::Data
                    }
                    WILL | WONT | DO | DONT => FilterState::Option(b),
                    SB => FilterState::Sub,
                    SE..=IAC => FilterState::Data,
                    // Not a command: the IAC is dropped, the byte kept.
                    _ => self.data(b, data),
                },
                FilterState::Option(command) => {
                    self.negotiate(command, b, replies);
                    FilterState::Data
                }
                FilterState::Sub if b == IAC => FilterState::SubIac,
                FilterState::Sub => FilterState::Sub,
                FilterState::SubIac if b == SE => FilterState::Data,
                // An escaped 0xFF inside the subnegotiation, or a malformed one: still in it.
                FilterState::SubIac => FilterState::Sub,
            };
        }
    }

    fn data(&mut self, b: u8, data: &mut Vec<u8>) -> FilterState {
        match b {
            IAC => FilterState::Iac,
            b'\r' => {
                data.push(b);
                FilterState::Cr
            }
            _ => {
                data.push(b);
                FilterState::Data
            }
        }
    }

    /// Answers `IAC <command> <option>` from the peer.
    fn negotiate(&mut self, command: u8, option: u8, replies: &mut Vec<u8>) {
        match (command, option) {
            (DO, ECHO) => match self.echo {
                Echo::Asked => self.echo = Echo::On,
                Echo::On => {}
                Echo::Off => replies.extend_from_slice(&[IAC, WONT, ECHO]),
            },
            (DONT, ECHO) => {
                if self.echo == Echo::On {
                    replies.extend_from_slice(&[IAC, WONT, ECHO]);
                }
                self.echo = Echo::Off;
            }
            (WILL, _) => replies.extend_from_slice(&[IAC, DONT, option]),
            (DO, _) => replies.extend_from_slice(&[IAC, WONT, option]),
            // WONT, and DONT of an option the server never uses: already so.
            _ => {}
        }
    }

    /// What to send before a password prompt: `IAC WILL ECHO` to a telnet client (it then
    /// stops echoing the typed password), nothing to anyone else or if already sent.
    pub fn hide_echo(&mut self) -> &'static [u8] {
        if !self.active || self.echo != Echo::Off {
            return b"";
        }
        self.echo = Echo::Asked;
        &[IAC, WILL, ECHO]
    }

    /// What to send once the password line has arrived: `IAC WONT ECHO` (the client echoes
    /// again) and a line end for the Enter it did not echo; nothing if echo was not hidden.
    pub fn show_echo(&mut self) -> &'static [u8] {
        if self.echo == Echo::Off {
            return b"";
        }
        self.echo = Echo::Off;
        &[IAC, WONT, ECHO, b'\r', b'\n']
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `IAC NOP`: a command that says nothing.
    const NOP: u8 = 241;

    /// Filters `input` in one go: (data, replies).
    fn run(t: &mut Telnet, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut data, mut replies) = (Vec::new(), Vec::new());
        if t.needs_filter(input) {
            t.filter(input, &mut data, &mut replies);
        } else {
            data.extend_from_slice(input);
        }
        (data, replies)
    }

    #[test]
    fn a_connection_that_does_not_start_with_iac_is_never_telnet() {
        let mut t = Telnet::default();
        assert_eq!(
            run(&mut t, b""),
            (vec![], vec![]),
            "nothing read decides nothing"
        );
        let input = "alice\r\npässword\n\r\0x\n".as_bytes();
        assert_eq!(run(&mut t, input), (input.to_vec(), vec![]));
        // Later IAC commands (here IAC DONT, and IAC DO ECHO) are data: answering them
        // would send telnet bytes to nc.
        let later = b"message bob \xff\xfe bad\n\xff\xfd\x01\n";
        assert_eq!(run(&mut t, later), (later.to_vec(), vec![]));
        assert!(!t.is_active());
        assert_eq!(t.hide_echo(), b"", "nc never gets a telnet byte");
        assert_eq!(t.show_echo(), b"");
    }

    #[test]
    fn negotiation_at_connect_is_stripped_and_refused() {
        let mut t = Telnet::default();
        // What `telnet HOST -4119` sends first: offers and requests.
        let input = [
            IAC, DO, 3, // SGA
            IAC, WILL, 24, // TERMINAL-TYPE
            IAC, WILL, 31, // NAWS
            IAC, WONT, 5, IAC, DONT, 6,
        ];
        let (data, replies) = run(&mut t, &input);
        assert!(data.is_empty());
        assert_eq!(replies, [IAC, WONT, 3, IAC, DONT, 24, IAC, DONT, 31]);
        assert!(t.is_active());
        assert_eq!(run(&mut t, b"alice\r\n"), (b"alice\r\n".to_vec(), vec![]));
    }

    #[test]
    fn commands_split_across_reads_are_still_removed() {
        let mut t = Telnet::default();
        let input = [
            IAC, NOP, b'h', IAC, WILL, 31, b'i', IAC, SB, 31, 0, 80, IAC, IAC, 0, 24, IAC, SE,
        ];
        let whole = run(&mut Telnet::default(), &input);
        assert_eq!(whole, (b"hi".to_vec(), vec![IAC, DONT, 31]));
        let (mut data, mut replies) = (Vec::new(), Vec::new());
        for b in input {
            let (d, r) = run(&mut t, &[b]);
            data.extend(d);
            replies.extend(r);
        }
        assert_eq!((data, replies), whole);
    }

    #[test]
    fn once_telnet_iac_iac_is_one_data_byte_other_commands_vanish_and_cr_nul_is_cr() {
        let mut t = Telnet::default();
        run(&mut t, &[IAC, NOP]);
        assert!(t.is_active());
        let input = [
            b'a', IAC, IAC, b'b', IAC, 246, b'c', b'\r', 0, b'd', b'\r', b'\n',
        ];
        assert_eq!(run(&mut t, &input).0, b"a\xffbc\rd\r\n");
        // An IAC before a byte that is no command: the byte is kept.
        assert_eq!(run(&mut t, &[IAC, b'e', b'\n']).0, b"e\n");
        // A subnegotiation never ends up in the data, however long.
        let mut long = vec![IAC, SB, 24];
        long.extend(std::iter::repeat_n(b'x', 10_000));
        long.extend([IAC, SE, b'o', b'k']);
        assert_eq!(run(&mut t, &long).0, b"ok");
    }

    #[test]
    fn a_password_is_hidden_only_from_a_telnet_client_and_shown_again_after() {
        let mut t = Telnet::default();
        run(&mut t, &[IAC, WILL, 24]);
        assert_eq!(t.hide_echo(), [IAC, WILL, ECHO]);
        assert_eq!(t.hide_echo(), b"", "asked once");
        // The client agrees: no answer to its answer.
        assert_eq!(run(&mut t, &[IAC, DO, ECHO]).1, vec![]);
        assert_eq!(run(&mut t, &[IAC, DO, ECHO]).1, vec![]);
        assert_eq!(t.show_echo(), [IAC, WONT, ECHO, b'\r', b'\n']);
        // Its acknowledgement is not answered either.
        assert_eq!(run(&mut t, &[IAC, DONT, ECHO]).1, vec![]);
        assert_eq!(t.show_echo(), b"");
        // Asked to echo when not hiding a password: refused.
        assert_eq!(run(&mut t, &[IAC, DO, ECHO]).1, vec![IAC, WONT, ECHO]);
    }

    #[test]
    fn a_client_that_refuses_echo_keeps_echoing_and_gets_no_extra_line_end() {
        let mut t = Telnet::default();
        run(&mut t, &[IAC, NOP]);
        assert_eq!(t.hide_echo(), [IAC, WILL, ECHO]);
        assert_eq!(run(&mut t, &[IAC, DONT, ECHO]).1, vec![], "a refusal");
        assert_eq!(t.show_echo(), b"");
        // Turned off after agreeing: acknowledged.
        assert_eq!(t.hide_echo(), [IAC, WILL, ECHO]);
        run(&mut t, &[IAC, DO, ECHO]);
        assert_eq!(run(&mut t, &[IAC, DONT, ECHO]).1, vec![IAC, WONT, ECHO]);
        assert_eq!(t.show_echo(), b"");
    }
}

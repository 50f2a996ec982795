//! A client of the TLS doors that trusts one key alone, as a pinned lanchat-client does.

use super::client::{ASK_TAGGED, TIMEOUT};
use super::web::Duplex;
use lanchat::protocol::{Kind, Line};
use lanchat::tls::PinVerifier;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

/// A line client over TLS that trusts only the key `fingerprint` names.
pub struct TlsClient {
    /// The connection, for tests that write raw bytes (IRC over TLS).
    pub stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    /// The `HELLO` read by [`TlsClient::connect_native`], not yet returned.
    hello: Option<Line>,
}

impl TlsClient {
    pub fn connect(addr: SocketAddr, fingerprint: &str) -> Result<TlsClient, String> {
        let verifier = PinVerifier::new(Some(fingerprint));
        let name = ServerName::try_from("lanchat").unwrap();
        let conn = ClientConnection::new(verifier.client_config(), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(TlsClient {
            stream: BufReader::new(stream),
            hello: None,
        })
    }

    /// Connects to the native TLS door as a program does: asks for tagged lines and skips
    /// the prose before `HELLO` (which the next read returns).
    pub fn connect_native(addr: SocketAddr, fingerprint: &str) -> Result<TlsClient, String> {
        let mut client = TlsClient::connect(addr, fingerprint)?;
        client.send(ASK_TAGGED.trim_end());
        loop {
            let mut raw = String::new();
            if client
                .stream
                .read_line(&mut raw)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("closed before HELLO".into());
            }
            if raw.starts_with("HELLO ") {
                client.hello = Line::parse(&raw);
                return Ok(client);
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        let stream = self.stream.get_mut();
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        stream.flush().unwrap();
    }

    /// The next line that is not a presence notice.
    pub fn next(&mut self) -> Line {
        if let Some(hello) = self.hello.take() {
            return hello;
        }
        loop {
            let mut raw = String::new();
            let n = self.stream.read_line(&mut raw).expect("a line over TLS");
            assert!(n > 0, "the server closed the TLS connection");
            let line = Line::parse(&raw).unwrap_or_else(|| panic!("unparseable {raw:?}"));
            if !matches!(line.kind, Kind::Presence | Kind::Presences) {
                return line;
            }
        }
    }

    pub fn expect(&mut self, kind: Kind) -> Line {
        let line = self.next();
        assert_eq!(line.kind, kind, "{line}");
        line
    }
}

/// TLS to `addr` trusting only `fingerprint`, handshake done, as a boxed stream.
pub fn tls_stream(addr: SocketAddr, fingerprint: &str) -> Box<dyn Duplex> {
    let client = TlsClient::connect(addr, fingerprint).unwrap();
    Box::new(client.stream.into_inner())
}

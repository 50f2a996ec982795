//! Reaching the server: TLS when its TLS door answers (see `secure`), else the plain port,
//! trying each address a host name resolves to. [`open`] returns the connection the
//! session then speaks over; anything the client must say before the server's first line
//! belongs at its end.
//!
//! What it does not do: find a server on the LAN (`discover` does, before this), or log in.

use super::secure::{self, CONNECT_TIMEOUT};
use super::{Error, Options};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};

/// Connects over TLS when the server's TLS door answers (see `secure`), else to the plain
/// port; prints what the user must know first (a new fingerprint, an unencrypted link).
pub(super) fn open(options: &Options) -> Result<secure::Link, Error> {
    let tls_addr = match options.tls.port {
        0 => None,
        port => (
            options.host.trim_start_matches('[').trim_end_matches(']'),
            port,
        )
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next()),
    };
    // The plain port's own error, which names that port.
    let mut plain_error = None;
    let secured = secure::secure(&options.host, tls_addr, &options.tls, || {
        connect(&options.host, options.port).map_err(|e| {
            let source = io::Error::other(e.to_string());
            plain_error = Some(e);
            source
        })
    })
    .map_err(|refusal| match (refusal, plain_error.take()) {
        (secure::TlsRefusal::Untrusted(why), _) => Error::Untrusted(why),
        (secure::TlsRefusal::Io(_), Some(plain)) => plain,
        (secure::TlsRefusal::Io(source), None) => Error::Connect {
            target: secure::pin_key(&options.host, options.tls.port),
            source,
        },
    })?;
    match (&secured.notice, secured.link.is_tls()) {
        (Some(notice), true) => println!("{notice}"),
        // On standard error, like other warnings: what is piped out stays the chat.
        (Some(notice), false) => eprintln!("{notice}"),
        (None, _) => {}
    }
    Ok(secured.link)
}

/// Resolves `host` and connects to the first address that answers.
fn connect(host: &str, port: u16) -> Result<TcpStream, Error> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let target = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    let failed = |source| Error::Connect {
        target: target.clone(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in (bare, port).to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                log::debug!("{addr}: {e}");
                last = e;
            }
        }
    }
    Err(failed(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failure_names_the_target() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = connect("127.0.0.1", port).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{e}"
        );
        let e = connect("[::1]", port).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to [::1]:{port}: ")),
            "{e}"
        );
    }

    #[test]
    fn connects_over_ipv4_and_ipv6_literals() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(connect("127.0.0.1", port).is_ok());
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            let port = v6.local_addr().unwrap().port();
            assert!(connect("::1", port).is_ok());
            assert!(connect("[::1]", port).is_ok());
        }
    }
}

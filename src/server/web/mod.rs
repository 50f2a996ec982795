//! The web door: the browser client. One HTTP request per connection: `GET /` and the
//! page's few files are served from the binary and the connection closed; `GET /ws` with a
//! WebSocket upgrade becomes an ordinary session whose lines travel one per text message,
//! spoken by the page's JavaScript. So a web user is a full user: same login, lockout,
//! commands and presence as a terminal user.
//!
//! ```text
//!   connect ──> read the request head (10 s and 8 KiB at most)
//!     a Host not naming us   ──> 421, close (DNS rebinding; see `host`)
//!     GET / | /app.js | ...  ──> 200 + file, close
//!     GET /ws (Upgrade)      ──> 101, then session::serve over WsReader / WsEncoder
//!     anything else          ──> 4xx, close
//! ```

mod host;
mod http;
mod socket;
mod ws;

use super::encoder::{Encoder, FanOut, WEB_VIEW};
use super::hub::Hub;
use super::outbox::Conn;
use super::session::{self, SessionContext};
use crate::protocol::{Kind, Line};
use http::{Asset, HttpStatus, Route};
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a connection may take to send its request head: a browser's idle pre-opened
/// connection, or a half-sent request, must not hold a thread for long.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The page and its files, embedded in the binary: nothing to build, nothing fetched from
/// elsewhere, so it works on a LAN with no internet. The first one is served at `/`.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("page/index.html"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("page/style.css"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("page/app.js"),
    },
    Asset {
        path: "/heartbeat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("page/heartbeat.js"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("page/favicon.svg"),
    },
];

/// Each protocol line as one WebSocket text message (the native wire line without its LF).
/// After `BYE` comes a close frame, so the browser sees a clean close rather than a drop.
///
/// Lines sent before the upgrade (only the shutdown notice can be) would land in the HTTP
/// response; the connection is closing then anyway.
pub struct WsEncoder;

impl Encoder for WsEncoder {
    fn encode(&self, line: &Line, out: &mut Vec<u8>) {
        let wire = line.to_wire();
        let text = wire.strip_suffix('\n').unwrap_or(&wire);
        ws::text_frame(text, out);
        if line.kind == Kind::Bye {
            out.extend_from_slice(&ws::close_frame(ws::close_code::NORMAL, ""));
        }
    }

    fn encode_fan_out(&self, fan_out: &FanOut<'_>, out: &mut Vec<u8>) {
        fan_out.shared(WEB_VIEW, out, |out| self.encode_event(fan_out.event(), out));
    }
}

/// What a browser gets when the server is full: a 503 page (or a failed WebSocket).
pub fn refusal(text: &str) -> Vec<u8> {
    http::error_response(HttpStatus::Unavailable, text)
}

/// Serves one connection of the web door until it ends.
pub fn serve(hub: &Hub, conn: &Arc<Conn>, ctx: &SessionContext<'_>) {
    let mut buf = Vec::new();
    let reply = match read_head(conn, &mut buf) {
        Ok(end) => match http::parse_request(&buf[..end]) {
            Ok(request) if !known_host(hub, conn, &request) => {
                log::debug!(
                    "conn {} ({}): Host \"{}\" does not name this server",
                    conn.id,
                    conn.peer,
                    request.header("Host").unwrap_or_default().escape_debug(),
                );
                let status = HttpStatus::MisdirectedRequest;
                http::error_response(status, http::error_detail(status))
            }
            Ok(request) => match http::route(&request, ASSETS) {
                Route::Upgrade { key } => {
                    if ctx.shutting_down.load(Ordering::Acquire) {
                        finish(conn);
                        return;
                    }
                    conn.send_bytes(&http::upgrade_response(key));
                    log::debug!("conn {} ({}): websocket opened", conn.id, conn.peer);
                    let mut reader =
                        socket::WsReader::new(hub.config().max_line_bytes, &buf[end..]);
                    session::serve(hub, conn, &mut reader, ctx);
                    return;
                }
                Route::Asset { asset, head_only } => {
                    http::response(HttpStatus::Ok, asset.content_type, asset.body, head_only)
                }
                Route::Error(status) => {
                    log::debug!(
                        "conn {} ({}): {} {} -> {}",
                        conn.id,
                        conn.peer,
                        request.method,
                        request.path.escape_debug(),
                        status.line().0
                    );
                    http::error_response(status, http::error_detail(status))
                }
            },
            Err(status) => http::error_response(status, http::error_detail(status)),
        },
        Err(Some(status)) => http::error_response(status, http::error_detail(status)),
        Err(None) => Vec::new(),
    };
    conn.send_bytes(&reply);
    finish(conn);
}

/// Whether the request's `Host` (if it has one) names this server (see [`host`]).
fn known_host(hub: &Hub, conn: &Conn, request: &http::Request) -> bool {
    request.header("Host").is_none_or(|header| {
        host::names_this_server(
            header,
            conn.local_ip(),
            &hub.config().web_host_names,
            crate::discovery::host_name,
        )
    })
}

/// Waits until the answer is written, then closes.
fn finish(conn: &Arc<Conn>) {
    conn.wait_flushed(Duration::from_secs(1));
    conn.close();
}

/// Reads until the request head is complete; returns where it ends in `buf`. `Err(None)`:
/// the client left (nothing to answer); `Err(Some(status))`: answer with that error.
#[inline(never)] // its buffer must not sit under the whole session (see `memory`)
fn read_head(conn: &Arc<Conn>, buf: &mut Vec<u8>) -> Result<usize, Option<HttpStatus>> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let stream = conn.stream();
    let mut searched = 0;
    loop {
        match http::complete_head(buf, searched) {
            Ok(Some(end)) => return Ok(end),
            Ok(None) => searched = buf.len(),
            Err(status) => return Err(Some(status)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Some(HttpStatus::RequestTimeout));
        }
        let _ = stream.set_read_timeout(Some(left));
        // Through the connection: on an HTTPS door it decrypts.
        match conn.read_plain(buf) {
            Ok(0) => return Err(None),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Some(HttpStatus::RequestTimeout))
            }
            Err(_) => return Err(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_text_frames_and_bye_closes() {
        let mut out = Vec::new();
        WsEncoder.encode(&Line::new(Kind::Msg, &["bob"], "hi <b>"), &mut out);
        assert_eq!(out[0], 0x81);
        assert_eq!(&out[2..], b"MSG bob hi <b>");
        let mut out = Vec::new();
        WsEncoder.encode(&Line::bye("logout", "Goodbye!"), &mut out);
        let text_len = 2 + "BYE logout Goodbye!".len();
        assert_eq!(&out[2..text_len], b"BYE logout Goodbye!");
        assert_eq!(&out[text_len..], &[0x88, 2, 0x03, 0xE8]);
    }

    #[test]
    fn the_page_is_served_at_the_root_and_refers_only_to_served_files() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(page.contains("<title>"));
        for reference in page.split(['"', '\'']).filter(|s| s.starts_with('/')) {
            assert!(
                ASSETS.iter().any(|a| a.path == reference),
                "index.html refers to {reference}, which is not served"
            );
        }
        // No inline script or handler: the Content-Security-Policy would block it.
        assert!(!page.contains("<script>"), "inline script");
        let handler = page.split(' ').any(|word| {
            word.strip_prefix("on")
                .and_then(|rest| rest.split_once('='))
                .is_some_and(|(name, _)| name.bytes().all(|b| b.is_ascii_lowercase()))
        });
        assert!(!handler, "inline event handler");
    }
}

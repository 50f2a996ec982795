//! Just enough HTTP/1.1 for the web door, as pure functions: find and parse a request head,
//! decide what it asks for ([`route`]), and format the response. One request per
//! connection: the server answers and closes, unless the request upgrades to a WebSocket.
//!
//! The request line and headers are parsed by `httparse`; where the head ends stays ours
//! ([`complete_head`]): the 8 KiB bound counts the head alone, not a first WebSocket frame
//! after it, and a head trickling in is searched once, not re-parsed at every byte.

use super::ws;

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// A response status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpStatus {
    /// 200
    Ok,
    /// 400
    BadRequest,
    /// 403: a page of another site tried to open the WebSocket.
    Forbidden,
    /// 404
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 408: the head did not arrive in time.
    RequestTimeout,
    /// 421: the `Host` is not a name of this server (DNS rebinding, or a name the
    /// administrator has not listed in `web_host_names`).
    MisdirectedRequest,
    /// 426: a WebSocket version other than 13.
    UpgradeRequired,
    /// 431
    HeadTooLarge,
    /// 503: the server is full.
    Unavailable,
}

impl HttpStatus {
    /// The code and reason phrase.
    pub fn line(self) -> (u16, &'static str) {
        match self {
            HttpStatus::Ok => (200, "OK"),
            HttpStatus::BadRequest => (400, "Bad Request"),
            HttpStatus::Forbidden => (403, "Forbidden"),
            HttpStatus::NotFound => (404, "Not Found"),
            HttpStatus::MethodNotAllowed => (405, "Method Not Allowed"),
            HttpStatus::RequestTimeout => (408, "Request Timeout"),
            HttpStatus::MisdirectedRequest => (421, "Misdirected Request"),
            HttpStatus::UpgradeRequired => (426, "Upgrade Required"),
            HttpStatus::HeadTooLarge => (431, "Request Header Fields Too Large"),
            HttpStatus::Unavailable => (503, "Service Unavailable"),
        }
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, without any query string.
    pub path: String,
    /// Header names (as sent) and values (trimmed), in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` among its comma-separated values.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Where a head of at most [`MAX_HEAD_BYTES`] (its blank line included) ends in `buf`;
/// `Ok(None)` while it may still come, [`HttpStatus::HeadTooLarge`] once it cannot fit. Bytes
/// after the head (a WebSocket client's first frame) do not count. `searched`: how much
/// of `buf` an earlier call already found no end in, so that a head trickling in a byte
/// at a time is scanned once, not once per byte.
pub fn complete_head(buf: &[u8], searched: usize) -> Result<Option<usize>, HttpStatus> {
    // An end straddling the old boundary starts at most 3 bytes before it.
    let from = searched.saturating_sub(3).min(buf.len());
    let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    match head_end(window.get(from..).unwrap_or_default()).map(|end| from + end) {
        Some(end) => Ok(Some(end)),
        None if buf.len() >= MAX_HEAD_BYTES => Err(HttpStatus::HeadTooLarge),
        None => Ok(None),
    }
}

/// Where the head ends (just after its blank line), if it is complete in `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses a complete head (as delimited by [`head_end`]). Beyond `httparse`'s grammar (one
/// space between the parts of the request line, HTTP/1.0 or 1.1, header names that are
/// tokens with no space before the colon, no obsolete line folding), the head must be UTF-8,
/// the method upper case and the target a path (`/...`).
pub fn parse_request(head: &[u8]) -> Result<Request, HttpStatus> {
    std::str::from_utf8(head).map_err(|_| HttpStatus::BadRequest)?;
    // The shortest header line is 3 bytes (`a:` and LF): room for every one the head holds.
    let mut slots = vec![httparse::EMPTY_HEADER; head.len() / 3 + 1];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err(HttpStatus::BadRequest),
    }
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(HttpStatus::BadRequest);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpStatus::BadRequest);
    }
    if !target.starts_with('/') {
        return Err(HttpStatus::BadRequest);
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value).map_err(|_| HttpStatus::BadRequest)?;
            Ok((h.name.to_string(), value.trim().to_string()))
        })
        .collect::<Result<_, HttpStatus>>()?;
    Ok(Request {
        method: method.to_string(),
        path,
        headers,
    })
}

/// A file the web door serves.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// The path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// A file (`head_only` for `HEAD`).
    Asset {
        /// The file.
        asset: &'a Asset,
        /// Send the headers only.
        head_only: bool,
    },
    /// The WebSocket handshake, with the client's key.
    Upgrade {
        /// `Sec-WebSocket-Key`.
        key: &'a str,
    },
    /// An error response.
    Error(HttpStatus),
}

/// The path of the WebSocket.
pub const WS_PATH: &str = "/ws";

/// Decides what `request` gets. `/` serves the first asset.
pub fn route<'a>(request: &'a Request, assets: &'a [Asset]) -> Route<'a> {
    if request.path == WS_PATH {
        return upgrade(request);
    }
    let path = if request.path == "/" {
        assets.first().map_or("/", |a| a.path)
    } else {
        request.path.as_str()
    };
    let Some(asset) = assets.iter().find(|a| a.path == path) else {
        return Route::Error(HttpStatus::NotFound);
    };
    match request.method.as_str() {
        "GET" => Route::Asset {
            asset,
            head_only: false,
        },
        "HEAD" => Route::Asset {
            asset,
            head_only: true,
        },
        _ => Route::Error(HttpStatus::MethodNotAllowed),
    }
}

/// Checks a WebSocket handshake request (RFC 6455 section 4.2.1).
fn upgrade(request: &Request) -> Route<'_> {
    if request.method != "GET" {
        return Route::Error(HttpStatus::MethodNotAllowed);
    }
    if !request.has_token("Upgrade", "websocket") || !request.has_token("Connection", "upgrade") {
        return Route::Error(HttpStatus::UpgradeRequired);
    }
    if request.header("Sec-WebSocket-Version") != Some("13") {
        return Route::Error(HttpStatus::UpgradeRequired);
    }
    let Some(key) = request
        .header("Sec-WebSocket-Key")
        .filter(|k| ws::valid_key(k))
    else {
        return Route::Error(HttpStatus::BadRequest);
    };
    if !same_origin(request) {
        return Route::Error(HttpStatus::Forbidden);
    }
    Route::Upgrade { key }
}

/// Whether a browser's `Origin` names the host the request was sent to. A page from another
/// site must not drive a visitor's browser into the chat (e.g. to lock their name out with
/// failed logins from their address). Clients that send no `Origin` (not browsers) pass.
fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.header("Origin") else {
        return true;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    request
        .header("Host")
        .is_some_and(|host| !host.is_empty() && host.eq_ignore_ascii_case(origin_host))
}

/// The security headers of every page: only this server's own scripts, styles and socket;
/// no inline script, so text that slipped into the page as markup still could not run.
const PAGE_HEADERS: &str = "Content-Security-Policy: default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; worker-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'\r\n\
X-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\n\
Cache-Control: no-cache\r\n";

/// A complete response that closes the connection.
pub fn response(status: HttpStatus, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let (code, reason) = status.line();
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {PAGE_HEADERS}Connection: close\r\n",
        body.len()
    );
    match status {
        HttpStatus::MethodNotAllowed => out.push_str("Allow: GET, HEAD\r\n"),
        HttpStatus::UpgradeRequired => {
            out.push_str("Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n")
        }
        _ => {}
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// A short plain-text error response.
pub fn error_response(status: HttpStatus, detail: &str) -> Vec<u8> {
    let (code, reason) = status.line();
    let body = format!("{code} {reason}: {detail}\n");
    response(status, "text/plain; charset=utf-8", body.as_bytes(), false)
}

/// What each error status says to a person.
pub fn error_detail(status: HttpStatus) -> &'static str {
    match status {
        HttpStatus::NotFound => "no such page here; the chat is at /",
        HttpStatus::MethodNotAllowed => "only GET (and HEAD) are served",
        HttpStatus::UpgradeRequired => "/ws is the chat's WebSocket (version 13)",
        HttpStatus::Forbidden => "a page of another site may not open this chat",
        HttpStatus::RequestTimeout => "the request did not arrive in time",
        HttpStatus::MisdirectedRequest => {
            "this server does not answer to that name; use its address, or ask its \
             administrator to add the name to web_host_names"
        }
        HttpStatus::HeadTooLarge => "the request head is too large",
        HttpStatus::Unavailable => "the server is full; please try again later",
        HttpStatus::Ok | HttpStatus::BadRequest => "malformed request",
    }
}

/// The `101 Switching Protocols` answer to a valid handshake.
pub fn upgrade_response(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        ws::accept_key(key)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSETS: &[Asset] = &[
        Asset {
            path: "/index.html",
            content_type: "text/html",
            body: b"<p>hi</p>",
        },
        Asset {
            path: "/app.js",
            content_type: "text/javascript",
            body: b"1",
        },
    ];

    fn request(text: &str) -> Request {
        let text = text.replace('\n', "\r\n");
        let end = head_end(text.as_bytes()).expect("complete head");
        parse_request(&text.as_bytes()[..end]).expect("parses")
    }

    const UPGRADE: &str = "GET /ws HTTP/1.1\nHost: 10.0.0.5:8080\nUpgrade: websocket\n\
        Connection: keep-alive, Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\
        Sec-WebSocket-Version: 13\nOrigin: http://10.0.0.5:8080\n\n";

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn heads_over_8_kib_are_refused_by_count() {
        // A head of exactly MAX_HEAD_BYTES, its blank line included, fits; one byte more
        // does not, however the bytes arrive.
        let head = |len: usize| {
            let start = "GET / HTTP/1.1\r\nX: ";
            let pad = "a".repeat(len - start.len() - 4);
            format!("{start}{pad}\r\n\r\n").into_bytes()
        };
        let fits = head(MAX_HEAD_BYTES);
        assert_eq!(fits.len(), MAX_HEAD_BYTES);
        assert_eq!(complete_head(&fits, 0), Ok(Some(MAX_HEAD_BYTES)));
        let mut with_frame = fits.clone();
        with_frame.extend_from_slice(&[0x81; 3000]);
        assert_eq!(complete_head(&with_frame, 0), Ok(Some(MAX_HEAD_BYTES)));
        let over = head(MAX_HEAD_BYTES + 1);
        assert_eq!(complete_head(&over, 0), Err(HttpStatus::HeadTooLarge));
        assert_eq!(complete_head(&over[..MAX_HEAD_BYTES - 1], 0), Ok(None));
        assert_eq!(
            complete_head(&over[..MAX_HEAD_BYTES], 0),
            Err(HttpStatus::HeadTooLarge)
        );
    }

    #[test]
    fn a_head_fed_a_byte_at_a_time_is_found_where_it_ends() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"[..],
            b"GET / HTTP/1.0\n\nrest",
        ] {
            let want = head_end(head);
            let mut searched = 0;
            let found = (1..=head.len()).find_map(|len| {
                let result = complete_head(&head[..len], searched).unwrap();
                searched = len;
                result
            });
            assert_eq!(found, want);
        }
    }

    #[test]
    fn requests_parse_with_headers_and_without_query() {
        let r = request("GET /app.js?v=2 HTTP/1.1\nHost: a\nX-Thing:  two words \n\n");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/app.js");
        assert_eq!(r.header("host"), Some("a"));
        assert_eq!(r.header("X-THING"), Some("two words"));
        assert_eq!(r.header("Cookie"), None);
        for bad in [
            "GET /\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad(name): x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\u{1}b\r\n\r\n",
        ] {
            assert_eq!(
                parse_request(bad.as_bytes()),
                Err(HttpStatus::BadRequest),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n\xff\r\n\r\n"),
            Err(HttpStatus::BadRequest)
        );
        // An empty line before the request line is ignored (RFC 9112 section 2.2).
        assert_eq!(request("\nGET / HTTP/1.0\n\n").path, "/");
    }

    #[test]
    fn routes_serve_assets_and_refuse_the_rest() {
        let get = |path: &str| request(&format!("GET {path} HTTP/1.1\nHost: a\n\n"));
        let index = &ASSETS[0];
        assert_eq!(
            route(&get("/"), ASSETS),
            Route::Asset {
                asset: index,
                head_only: false
            }
        );
        assert_eq!(
            route(&get("/app.js"), ASSETS),
            Route::Asset {
                asset: &ASSETS[1],
                head_only: false
            }
        );
        assert_eq!(
            route(&get("/etc/passwd"), ASSETS),
            Route::Error(HttpStatus::NotFound)
        );
        assert_eq!(
            route(&get("/../app.js"), ASSETS),
            Route::Error(HttpStatus::NotFound)
        );
        let head = request("HEAD / HTTP/1.1\n\n");
        assert!(matches!(
            route(&head, ASSETS),
            Route::Asset {
                head_only: true,
                ..
            }
        ));
        let post = request("POST / HTTP/1.1\n\n");
        assert_eq!(
            route(&post, ASSETS),
            Route::Error(HttpStatus::MethodNotAllowed)
        );
        // A plain GET of the socket's path is not a handshake.
        assert_eq!(
            route(&get("/ws"), ASSETS),
            Route::Error(HttpStatus::UpgradeRequired)
        );
    }

    #[test]
    fn websocket_handshakes_are_checked() {
        let ok = request(UPGRADE);
        assert_eq!(
            route(&ok, ASSETS),
            Route::Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ=="
            }
        );
        let no_origin = request(&UPGRADE.replace("Origin: http://10.0.0.5:8080\n", ""));
        assert!(matches!(route(&no_origin, ASSETS), Route::Upgrade { .. }));
        let cases = [
            (
                "Origin: http://10.0.0.5:8080",
                "Origin: http://evil.example",
                HttpStatus::Forbidden,
            ),
            (
                "Origin: http://10.0.0.5:8080",
                "Origin: null",
                HttpStatus::Forbidden,
            ),
            ("Version: 13", "Version: 8", HttpStatus::UpgradeRequired),
            (
                "Upgrade: websocket",
                "Upgrade: h2c",
                HttpStatus::UpgradeRequired,
            ),
            (
                "keep-alive, Upgrade",
                "keep-alive",
                HttpStatus::UpgradeRequired,
            ),
            (
                "Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Key: short",
                HttpStatus::BadRequest,
            ),
            ("GET /ws", "POST /ws", HttpStatus::MethodNotAllowed),
        ];
        for (from, to, status) in cases {
            let r = request(&UPGRADE.replace(from, to));
            assert_eq!(route(&r, ASSETS), Route::Error(status), "{to}");
        }
    }

    #[test]
    fn responses_carry_length_security_headers_and_close() {
        let text = String::from_utf8(response(HttpStatus::Ok, "text/html", b"<p>", false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("script-src 'self'"));
        assert!(text.ends_with("\r\n\r\n<p>"));
        let head = response(HttpStatus::Ok, "text/html", b"<p>", true);
        assert!(head.ends_with(b"\r\n\r\n"));
        let e = String::from_utf8(error_response(HttpStatus::MethodNotAllowed, "x")).unwrap();
        assert!(e.starts_with("HTTP/1.1 405 ") && e.contains("Allow: GET, HEAD\r\n"));
        let up = String::from_utf8(upgrade_response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(up.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(up.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }
}

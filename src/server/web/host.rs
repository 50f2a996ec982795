//! Which `Host` header names this server: the defence against DNS rebinding. A page on
//! `http://evil.example/` whose name the attacker re-points at the lab server's address
//! is, to the browser, the same origin as `evil.example`: its `Origin` and `Host` agree,
//! so an Origin check alone lets its script open the chat socket from a student's browser.
//! Its `Host` still says `evil.example`, though, and this server has no such name.
//!
//! A `Host` names this server when it is (ignoring a port, ASCII case and a final dot):
//! the address the client reached (an IP literal cannot be rebound: the browser really
//! connected to it), `localhost`, the machine's host name or that name with `.local`
//! (mDNS), or one of `web_host_names`. A request without `Host` (HTTP/1.0 tools, never a
//! browser) passes. Pure: the caller supplies the address and the host name.

use std::net::IpAddr;

/// The name part of a `Host` header value: `[::1]:8080` -> `::1`, `lab-pc:8080` -> `lab-pc`,
/// without a final dot. `None` if it is malformed (an unclosed `[`, a port that is not a
/// number).
pub fn host_part(header: &str) -> Option<&str> {
    let header = header.trim();
    let (name, port) = if let Some(rest) = header.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if after.is_empty() {
            (inside, None)
        } else {
            (inside, Some(after.strip_prefix(':')?))
        }
    } else if header.bytes().filter(|&b| b == b':').count() > 1 {
        // A bare IPv6 address, which a browser never sends but a tool might.
        (header, None)
    } else {
        match header.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (header, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

/// Whether `header` (a `Host` value) names this server, reached at `local_ip`, on a machine
/// called `host_name()` (asked only when the simpler rules did not decide), with the
/// administrator's extra `configured` names.
pub fn names_this_server(
    header: &str,
    local_ip: Option<IpAddr>,
    configured: &[String],
    host_name: impl FnOnce() -> String,
) -> bool {
    let Some(name) = host_part(header) else {
        return false;
    };
    // An IPv6 literal may carry a zone (`fe80::1%25eth0`); the address is what counts.
    let literal = name.split('%').next().unwrap_or(name);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        if local_ip.is_some_and(|local| local.to_canonical() == ip.to_canonical()) {
            return true;
        }
    }
    let same = |other: &str| {
        let other = other.strip_suffix('.').unwrap_or(other);
        !other.is_empty() && other.eq_ignore_ascii_case(name)
    };
    if same("localhost") || configured.iter().any(|c| same(c)) {
        return true;
    }
    let machine = host_name();
    same(&machine) || same(&format!("{machine}.local"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, local: &str, configured: &[&str]) -> bool {
        let configured: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
        names_this_server(header, Some(local.parse().unwrap()), &configured, || {
            "lab-pc".to_string()
        })
    }

    #[test]
    fn host_parts_drop_the_port_and_the_final_dot() {
        assert_eq!(host_part("lab-pc:8080"), Some("lab-pc"));
        assert_eq!(host_part("lab-pc.local."), Some("lab-pc.local"));
        assert_eq!(host_part("[::1]:8080"), Some("::1"));
        assert_eq!(host_part("[fe80::1%25eth0]"), Some("fe80::1%25eth0"));
        assert_eq!(host_part("::1"), Some("::1"));
        assert_eq!(host_part("10.0.0.5"), Some("10.0.0.5"));
        for bad in ["", ":8080", "[::1", "x:80a", "x:", "[::1]x"] {
            assert_eq!(host_part(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_reached_address_localhost_the_host_name_and_configured_names_pass() {
        assert!(check("192.168.1.20:8080", "192.168.1.20", &[]));
        assert!(check("[::1]:8080", "::1", &[]));
        assert!(check("127.0.0.1:8080", "::ffff:127.0.0.1", &[]));
        assert!(check("LOCALHOST:8080", "192.168.1.20", &[]));
        assert!(check("lab-pc", "192.168.1.20", &[]));
        assert!(check("Lab-PC.local.:8080", "192.168.1.20", &[]));
        assert!(check(
            "chat.school.example",
            "192.168.1.20",
            &["chat.school.example."]
        ));
        assert!(check("10.0.2.2:8080", "10.0.2.15", &["10.0.2.2"]));
    }

    #[test]
    fn other_names_and_other_addresses_do_not() {
        assert!(!check("evil.example", "192.168.1.20", &[]));
        assert!(!check(
            "evil.example:8080",
            "192.168.1.20",
            &["chat.school.example"]
        ));
        assert!(!check("lab-pc.evil.example", "192.168.1.20", &[]));
        assert!(!check("192.168.1.21:8080", "192.168.1.20", &[]));
        assert!(!check("127.0.0.1", "192.168.1.20", &[]));
        assert!(!check("", "192.168.1.20", &[""]));
        assert!(!check("x:y", "192.168.1.20", &[]));
        // The host name is asked only when needed.
        let asked = std::cell::Cell::new(false);
        let ip = Some("192.168.1.20".parse().unwrap());
        assert!(names_this_server("192.168.1.20", ip, &[], || {
            asked.set(true);
            String::new()
        }));
        assert!(!asked.get());
    }
}

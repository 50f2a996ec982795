//! IRC messages as pure functions: a client's line parsed into a [`Message`], server lines
//! formatted with [`format`]. No I/O and no state, so every rule of RFC 1459/2812 and the
//! modern documentation about framing is checked by unit tests here.
//!
//! ```text
//!   message = [ "@" tags SP ] [ ":" source SP ] command *( SP middle ) [ SP ":" trailing ]
//! ```

/// Longest line, line ending included (RFC 1459 section 2.3); tags do not count.
pub const MAX_LINE: usize = 512;
/// Longest line body: [`MAX_LINE`] without its CR LF.
pub const MAX_BODY: usize = MAX_LINE - 2;

/// One message from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The command, upper-cased (`PRIVMSG`, `NICK`, ...).
    pub command: String,
    /// Its parameters, the trailing one last and without its `:`.
    pub params: Vec<String>,
}

impl Message {
    /// Parameter `i`, if present.
    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }
}

/// Cuts `s` to at most `max` bytes without splitting a character.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses one line (without its line ending). Client tags are skipped (we advertise no
/// `message-tags`), a client's source prefix is ignored (RFC 2812 section 2.3), and the
/// body is cut to [`MAX_BODY`] bytes on a character boundary. `None` for a line with no
/// command (blank, or only tags/prefix), which is silently ignored.
pub fn parse(line: &str) -> Option<Message> {
    let mut rest = line.trim_start_matches(' ');
    if rest.starts_with('@') {
        rest = rest
            .split_once(' ')
            .map_or("", |(_, r)| r)
            .trim_start_matches(' ');
    }
    rest = truncate(rest, MAX_BODY);
    if rest.starts_with(':') {
        rest = rest
            .split_once(' ')
            .map_or("", |(_, r)| r)
            .trim_start_matches(' ');
    }
    let (command, mut rest) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if command.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_string());
            break;
        }
        match rest.split_once(' ') {
            Some((p, r)) => {
                params.push(p.to_string());
                rest = r;
            }
            None => {
                params.push(rest.to_string());
                break;
            }
        }
    }
    Some(Message {
        command: command.to_ascii_uppercase(),
        params,
    })
}

/// Formats one server line with its CR LF: `[@tags ][:source ]COMMAND middle... :trailing`.
/// The last parameter is written as a trailing one (with `:`) when `trailing` is set, or
/// when it must be (empty, has a space, starts with `:`). CR, LF and NUL, which would end
/// or corrupt the line, become spaces; the line is cut to [`MAX_LINE`] bytes (tags aside).
pub fn format(
    tags: Option<&str>,
    source: Option<&str>,
    command: &str,
    params: &[&str],
    trailing: bool,
) -> String {
    let tags_len = tags.map_or(0, |t| t.len() + 2);
    let params_len: usize = params.iter().map(|p| p.len() + 2).sum();
    let wanted = tags_len + source.map_or(0, |s| s.len() + 2) + command.len() + params_len + 2;
    let mut out = String::with_capacity(wanted.min(tags_len + MAX_BODY + 2));
    if let Some(tags) = tags {
        out.push('@');
        out.push_str(tags);
        out.push(' ');
    }
    let body_start = out.len();
    if let Some(source) = source {
        out.push(':');
        out.push_str(source);
        out.push(' ');
    }
    out.push_str(command);
    for (i, p) in params.iter().enumerate() {
        out.push(' ');
        let last = i + 1 == params.len();
        if last && (trailing || p.is_empty() || p.contains(' ') || p.starts_with(':')) {
            out.push(':');
        }
        out.push_str(p);
    }
    // Almost every line has none of them: it is scanned, not copied.
    if out.as_bytes()[body_start..]
        .iter()
        .any(|b| matches!(b, b'\r' | b'\n' | b'\0'))
    {
        let body = out[body_start..].replace(['\r', '\n', '\0'], " ");
        out.truncate(body_start);
        out.push_str(&body);
    }
    let body_len = truncate(&out[body_start..], MAX_BODY).len();
    out.truncate(body_start + body_len);
    out.push_str("\r\n");
    out
}

/// Bytes of a line's fixed part before its text, for splitting long texts: `:source
/// COMMAND target :` plus CR LF.
pub fn overhead(source: &str, command: &str, target: &str) -> usize {
    1 + source.len() + 1 + command.len() + 1 + target.len() + 2 + 2
}

/// Splits `text` into pieces of at most `max` bytes on character boundaries (at a space
/// where one is near), so a long lanchat message reaches an IRC client as several lines
/// that each fit in 512 bytes. An empty text is one empty piece.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(16);
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let cut = truncate(rest, max).len();
        // Prefer to break after a space in the last quarter of the piece.
        let cut = match rest[..cut].rfind(' ') {
            Some(space) if space >= cut * 3 / 4 => space + 1,
            _ => cut,
        };
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

/// IRC's `ascii` case mapping (advertised as CASEMAPPING=ascii): nicks and channels that
/// differ only in ASCII case are the same.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `name` matches an IRC mask (`*` any run, `?` one character), ignoring ASCII
/// case; a mask with neither is a plain name. WHO and LIST take these.
///
/// The classic greedy glob: a `*` first matches nothing, and on a mismatch the last `*`
/// takes one more character. Only the last `*` ever needs revisiting (an earlier one could
/// only take characters the later one can take too), so this costs at most
/// `mask.len() * name.len()` steps, where trying every split of every `*` is exponential
/// (`#*a*a*a*a*a*a*a*a*a*a*b` took seconds of CPU per channel).
pub fn mask_match(mask: &str, name: &str) -> bool {
    if mask.is_ascii() && name.is_ascii() {
        // Names are ASCII (`valid_username`), and so is almost every mask: no copies.
        return glob(mask.as_bytes(), name.as_bytes(), |m, n| {
            m == b'?' || m.eq_ignore_ascii_case(&n)
        });
    }
    let mask: Vec<char> = mask.chars().collect();
    let name: Vec<char> = name.chars().collect();
    glob(&mask, &name, |m, n| m == '?' || m.eq_ignore_ascii_case(&n))
}

/// The greedy glob of [`mask_match`] over bytes or characters; `same(m, n)` says whether
/// mask item `m` (not a `*`) matches name item `n`.
fn glob<T: Copy + PartialEq + From<u8>>(
    mask: &[T],
    name: &[T],
    same: impl Fn(T, T) -> bool,
) -> bool {
    let star = T::from(b'*');
    let (mut m, mut n) = (0, 0);
    // The last `*` seen, and the first name position it has not taken yet.
    let mut last_star: Option<(usize, usize)> = None;
    while n < name.len() {
        if m < mask.len() && mask[m] == star {
            last_star = Some((m, n));
            m += 1;
        } else if m < mask.len() && same(mask[m], name[n]) {
            m += 1;
            n += 1;
        } else if let Some((star_m, star_n)) = last_star {
            m = star_m + 1;
            n = star_n + 1;
            last_star = Some((star_m, n));
        } else {
            return false;
        }
    }
    mask[m..].iter().all(|&c| c == star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> (String, Vec<String>) {
        let m = parse(line).unwrap();
        (m.command, m.params)
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_commands_params_and_trailing() {
        assert_eq!(p("NICK alice"), ("NICK".into(), v(&["alice"])));
        assert_eq!(
            p("user u 0 * :Real Name"),
            ("USER".into(), v(&["u", "0", "*", "Real Name"]))
        );
        assert_eq!(
            p("PRIVMSG #c :hello :there  "),
            ("PRIVMSG".into(), v(&["#c", "hello :there  "]))
        );
        assert_eq!(p("PRIVMSG #c :"), ("PRIVMSG".into(), v(&["#c", ""])));
        assert_eq!(p("PING"), ("PING".into(), v(&[])));
        assert_eq!(
            p("JOIN   #a,#b   key"),
            ("JOIN".into(), v(&["#a,#b", "key"]))
        );
        assert_eq!(
            p(":me!x@y PRIVMSG bob hi"),
            ("PRIVMSG".into(), v(&["bob", "hi"]))
        );
        assert_eq!(p("@time=x;+y :me QUIT"), ("QUIT".into(), v(&[])));
        assert_eq!(parse(""), None);
        assert_eq!(parse("   "), None);
        assert_eq!(parse(":prefix-only"), None);
        assert_eq!(parse("@tags-only"), None);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let text = "é".repeat(400);
        let m = parse(&format!("PRIVMSG bob :{text}")).unwrap();
        let body_len = "PRIVMSG bob :".len() + m.params[1].len();
        assert!(body_len <= MAX_BODY, "{body_len}");
        assert!(body_len >= MAX_BODY - 1);
        assert!(m.params[1].chars().all(|c| c == 'é'));
        // Tags do not count toward the limit.
        let tagged = format!("@a={} PING x", "t".repeat(600));
        assert_eq!(parse(&tagged).unwrap().params, v(&["x"]));
    }

    #[test]
    fn formats_lines_with_trailing_parameters() {
        assert_eq!(
            format(Some("time=t"), Some("srv"), "PONG", &["srv", "tok"], false),
            "@time=t :srv PONG srv tok\r\n"
        );
        assert_eq!(
            format(None, Some("srv"), "001", &["al", "Welcome home"], true),
            ":srv 001 al :Welcome home\r\n"
        );
        assert_eq!(
            format(None, Some("a!a@h"), "JOIN", &["#c"], false),
            ":a!a@h JOIN #c\r\n"
        );
        assert_eq!(format(None, None, "X", &[""], false), "X :\r\n");
        assert_eq!(format(None, None, "X", &[":)"], false), "X ::)\r\n");
        assert_eq!(
            format(None, None, "X", &["a\r\nQUIT"], true),
            "X :a  QUIT\r\n"
        );
        assert_eq!(format(None, None, "X", &["a\0b"], true), "X :a b\r\n");
        let long = format(None, Some("s"), "NOTICE", &["n", &"x".repeat(600)], true);
        assert_eq!(long.len(), MAX_LINE);
        assert!(long.ends_with("x\r\n"));
        // Tags do not count toward the limit, and a cut keeps whole characters.
        let tagged = format(
            Some("time=t"),
            Some("s"),
            "NOTICE",
            &["n", &"é".repeat(300)],
            true,
        );
        let body = tagged.strip_prefix("@time=t ").unwrap();
        assert!(
            body.len() <= MAX_LINE && body.len() >= MAX_LINE - 1,
            "{}",
            body.len()
        );
        assert!(body.ends_with("é\r\n"));
    }

    #[test]
    fn splits_long_texts() {
        assert_eq!(split_text("", 100), vec![""]);
        assert_eq!(split_text("short", 100), vec!["short"]);
        let words = "word ".repeat(100);
        let pieces = split_text(&words, 64);
        assert!(pieces.iter().all(|p| p.len() <= 64));
        assert_eq!(pieces.concat(), words);
        assert!(pieces[0].ends_with(' '));
        let accents = "é".repeat(100);
        let pieces = split_text(&accents, 33);
        assert!(pieces.iter().all(|p| p.len() <= 33));
        assert_eq!(pieces.concat(), accents);
    }

    #[test]
    fn ascii_case_mapping() {
        assert!(same_name("Alice", "aLICE"));
        assert!(!same_name("alice", "alice2"));
        // ascii, not rfc1459: brackets are not letters.
        assert!(!same_name("a[", "a{"));
    }

    #[test]
    fn masks_match_globs_without_case() {
        assert!(mask_match("coolni*", "coolNick"));
        assert!(mask_match("COOLNICK", "coolNick"));
        assert!(mask_match("*an1", "#chan1"));
        assert!(mask_match("#c?an*", "#chan2"));
        assert!(!mask_match("*an3", "#chan1"));
        assert!(!mask_match("cool", "coolNick"));
        assert!(mask_match("*", ""));
        assert!(mask_match("**", ""));
        assert!(!mask_match("?", ""));
        assert!(mask_match("*?", "a"));
        assert!(mask_match("a*b*c", "aXbYbZc"));
        assert!(!mask_match("a*b*c", "aXbYbZ"));
        assert!(mask_match("*a", "aaa"));
        assert!(mask_match("#caf?", "#café"));
        // `?` is one character, not one byte; case is ASCII case only (CASEMAPPING=ascii).
        assert!(!mask_match("*é*", "#CAFÉ"));
    }

    #[test]
    fn masks_agree_with_trying_every_split() {
        // The exponential definition, as a reference on short inputs.
        fn slow(m: &[u8], n: &[u8]) -> bool {
            match (m.first(), n.first()) {
                (None, None) => true,
                (Some(b'*'), _) => slow(&m[1..], n) || (!n.is_empty() && slow(m, &n[1..])),
                (Some(b'?'), Some(_)) => slow(&m[1..], &n[1..]),
                (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => slow(&m[1..], &n[1..]),
                _ => false,
            }
        }
        // Every mask over {a, B, *, ?} up to 5 long against every name over {a, b} up to 6.
        let words = |alphabet: &[u8], max: usize| {
            let mut all = vec![Vec::new()];
            let mut last = vec![Vec::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w: &Vec<u8>| {
                        alphabet.iter().map(move |&c| [w.as_slice(), &[c]].concat())
                    })
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        };
        let names = words(b"ab", 6);
        for mask in words(b"aB*?", 5) {
            for name in &names {
                let (m, n) = (
                    std::str::from_utf8(&mask).unwrap(),
                    std::str::from_utf8(name),
                );
                assert_eq!(mask_match(m, n.unwrap()), slow(&mask, name), "{m} {n:?}");
            }
        }
    }

    #[test]
    fn a_pathological_mask_costs_microseconds() {
        let started = std::time::Instant::now();
        let mask = format!("#{}b", "*a".repeat(250));
        let name = format!("#{}", "a".repeat(400));
        for _ in 0..10 {
            assert!(!mask_match(&mask, &name));
        }
        assert!(mask_match(
            "#*a*a*a*a*a*a*a*a*a*a*b",
            "#aaaaaaaaaaaaaaaaaaaaaaaaaab"
        ));
        assert!(!mask_match(
            "#*a*a*a*a*a*a*a*a*a*a*b",
            "#aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
        // 10 runs of 500 x 400 steps each: well under a second even in a debug build.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}

//! Where a database lives: a file path, or a `postgres://` URL (with the `postgres` feature).
//! Also the one place that hides a URL's password before it is printed anywhere.

use std::ops::Range;

/// Whether `location` names a PostgreSQL server rather than a file.
pub(crate) fn is_postgres_url(location: &str) -> bool {
    let lower = location.get(..13).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `location` as it may be shown in messages, logs and stats: every password it holds is
/// replaced by `***`. Paths come back unchanged.
///
/// Passwords are found the way the PostgreSQL driver (`tokio_postgres::Config`) finds them:
///
/// - in a `postgres://` or `postgresql://` URL, the user part is everything up to the first
///   `@`, and the password is what follows its first `:`, raw `/`, `?`, `:` and `%`-escapes
///   included. So that a raw `@` in a password cannot leak its tail, everything up to the
///   last `@` is hidden too. `password=` parameters (their names may be `%`-escaped) are
///   hidden wherever they appear in the query;
/// - in a `key=value` connection string (`host=h password=secret`, `password='a b'`, with
///   `\` escapes), the value of every `password` key.
///
/// ```
/// assert_eq!(
///     batchdb::redact("postgres://ann:s3cret@db.example:5432/jobs?sslmode=disable"),
///     "postgres://ann:***@db.example:5432/jobs?sslmode=disable"
/// );
/// assert_eq!(batchdb::redact("postgres://ann:s/3?c@h/db"), "postgres://ann:***@h/db");
/// assert_eq!(batchdb::redact("postgres://h/db?user=ann&password=s3cret"), "postgres://h/db?user=ann&password=***");
/// assert_eq!(batchdb::redact("host=h user=ann password='s3 cret'"), "host=h user=ann password=***");
/// assert_eq!(batchdb::redact("/var/lib/jobs.db"), "/var/lib/jobs.db");
/// ```
pub fn redact(location: &str) -> String {
    let spans = password_spans(location);
    let mut out = String::with_capacity(location.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&location[at..span.start]);
        out.push_str("***");
        at = span.end;
    }
    out.push_str(&location[at..]);
    out
}

/// The byte ranges of `location` that hold a password, sorted and not overlapping.
fn password_spans(location: &str) -> Vec<Range<usize>> {
    let mut spans = match url_rest(location) {
        Some(start) => {
            // The driver's reading (the user part ends at the first '@'), and the cautious one
            // (at the last '@'): a password with a raw '@' is hidden whole.
            let first = location[start..].find('@').map(|i| start + i);
            let last = location[start..].rfind('@').map(|i| start + i);
            let mut v = url_spans(location, start, first);
            v.extend(url_spans(location, start, last));
            v
        }
        None => keyword_spans(location).into_iter().map(|(span, _)| span).collect(),
    };
    spans.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in spans {
        match merged.last_mut() {
            Some(m) if r.start <= m.end => m.end = m.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// Where a URL's part after `scheme://` starts, for the schemes the driver accepts (in any
/// case here, so that a mistyped scheme is hidden too).
fn url_rest(location: &str) -> Option<usize> {
    ["postgresql://", "postgres://"].iter().find_map(|prefix| {
        let head = location.get(..prefix.len())?;
        head.eq_ignore_ascii_case(prefix).then_some(prefix.len())
    })
}

/// Where a PostgreSQL URL's `?parameters` start (the byte after the `?`), read as the driver
/// does: the user part ends at the first `@`, so a `?` in a password is not the query.
#[cfg(feature = "postgres")]
pub(crate) fn url_query_start(url: &str) -> Option<usize> {
    let start = url_rest(url)?;
    let hosts = url[start..].find('@').map_or(start, |at| start + at + 1);
    url[hosts..].find('?').map(|q| hosts + q + 1)
}

/// The password spans of the URL `s` whose user part ends at the byte `at` (when it has one),
/// read as the driver's `UrlParser` does: user part, host list up to `/` or `?`, the database
/// name up to `?`, then `key=value` parameters separated by `&`.
fn url_spans(s: &str, start: usize, at: Option<usize>) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut i = start;
    if let Some(at) = at {
        if let Some(colon) = s[start..at].find(':') {
            spans.push(start + colon + 1..at);
        }
        i = at + 1;
    }
    // Hosts, then the database name: neither holds a password.
    i += s[i..].find(['/', '?']).unwrap_or(s.len() - i);
    if s[i..].starts_with('/') {
        i += s[i..].find('?').unwrap_or(s.len() - i);
    }
    if !s[i..].starts_with('?') {
        return spans;
    }
    i += 1;
    while i < s.len() {
        let Some(eq) = s[i..].find('=').map(|e| i + e) else { break };
        // The driver takes the key up to '=', '&' included: "a&password=x" is one (unknown)
        // key to it. Hide a password whatever the driver makes of it.
        let key = percent_decode(&s[i..eq]);
        let is_password = key.rsplit('&').next().is_some_and(|k| k.eq_ignore_ascii_case("password"));
        let end = s[eq + 1..].find('&').map_or(s.len(), |e| eq + 1 + e);
        if is_password {
            spans.push(eq + 1..end);
        }
        i = end + 1;
    }
    spans
}

/// The `password` values of a `key=value` connection string, with each value's span (its
/// quotes included) and its text. An unterminated quoted password is hidden to the end.
fn keyword_spans(s: &str) -> Vec<(Range<usize>, String)> {
    let (pairs, _) = keyword_pairs(s);
    pairs
        .into_iter()
        .filter(|(key, value, _)| s[key.clone()].eq_ignore_ascii_case("password") && !value.is_empty())
        .map(|(_, value, text)| (value, text))
        .collect()
}

/// The keys the driver knows in a `key=value` connection string (`Config::param`), and
/// `sslrootcert`, which batchdb reads as libpq does (src/store/postgres/tls.rs).
const DRIVER_KEYS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslrootcert",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// Whether `location` is a whole `key=value` connection string of the driver's keys (`host=h
/// dbname=d`), which batchdb does not take: opened as a file, its name (and password) would
/// end up in the file system and in messages.
pub(crate) fn is_keyword_conninfo(location: &str) -> bool {
    let (pairs, complete) = keyword_pairs(location);
    complete
        && !pairs.is_empty()
        && pairs.iter().all(|(key, _, _)| DRIVER_KEYS.contains(&&location[key.clone()]))
}

/// A `key=value` connection string as the driver's `Parser` reads it: keys are runs of
/// characters other than white space and `=`, values are single-quoted or unquoted, and `\`
/// escapes the next character. Returns each key's span, its value's span and the value's
/// text, and whether the whole string parsed; parsing stops where the driver would fail
/// (on a plain path, say).
#[allow(clippy::type_complexity)]
fn keyword_pairs(s: &str) -> (Vec<(Range<usize>, Range<usize>, String)>, bool) {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    let pos =
        |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| it.peek().map_or(s.len(), |&(i, _)| i);
    loop {
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let key_start = pos(&mut it);
        while it.next_if(|&(_, c)| !c.is_whitespace() && c != '=').is_some() {}
        let key_end = pos(&mut it);
        if key_end == key_start {
            return (out, key_start == s.len());
        }
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        if it.next_if(|&(_, c)| c == '=').is_none() {
            return (out, false);
        }
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let value_start = pos(&mut it);
        let quoted = it.next_if(|&(_, c)| c == '\'').is_some();
        let mut value = String::new();
        while let Some(&(_, c)) = it.peek() {
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                break;
            }
            it.next();
            if c == '\\' {
                if let Some((_, escaped)) = it.next() {
                    value.push(escaped);
                }
            } else {
                value.push(c);
            }
        }
        let closed = quoted && it.next_if(|&(_, c)| c == '\'').is_some();
        let value_end = pos(&mut it);
        out.push((key_start..key_end, value_start..value_end, value));
        if value_end == value_start || (quoted && !closed) {
            return (out, false);
        }
    }
}

/// The secrets of a location, as written and as decoded (percent-escapes, quotes and `\`
/// escapes undone), to scrub from messages that a driver produced: they might quote a piece
/// of the connection string.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn secrets(location: &str) -> Vec<String> {
    let mut out = Vec::new();
    if url_rest(location).is_some() {
        for span in password_spans(location) {
            let raw = &location[span];
            out.push(raw.to_string());
            out.push(percent_decode(raw));
        }
        // The driver's own password, which may be a part of a merged span.
        if let Some(start) = url_rest(location) {
            let first = location[start..].find('@').map(|i| start + i);
            for span in url_spans(location, start, first) {
                let raw = &location[span];
                out.push(raw.to_string());
                out.push(percent_decode(raw));
            }
        }
    } else {
        for (span, value) in keyword_spans(location) {
            out.push(location[span].to_string());
            out.push(value);
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}
/// Replaces every secret of `location` in `message` by `***`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn scrub(message: &str, location: &str) -> String {
    let mut m = message.to_string();
    for s in secrets(location) {
        m = m.replace(&s, "***");
    }
    m
}

/// `%XX` escapes undone (an invalid one is kept as it is), as the driver reads URL parts.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) =
                std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form the driver accepts, with the password it reads and what must be shown.
    /// Each password is distinctive, so that finding it anywhere in the shown text is a leak.
    const CASES: &[(&str, &str, &str)] = &[
        ("postgres://u:pw1@h/d", "pw1", "postgres://u:***@h/d"),
        ("postgresql://u:pw2@h:5432/d", "pw2", "postgresql://u:***@h:5432/d"),
        ("postgresql://u:p%40ss3@h:1/d", "p@ss3", "postgresql://u:***@h:1/d"),
        // Raw '/', '?', ':' and '%' in the user part: the driver reads up to the first '@'.
        ("postgres://u:se/cr4t@h/d", "se/cr4t", "postgres://u:***@h/d"),
        ("postgres://u:se?cr5t@h/d?sslmode=disable", "se?cr5t", "postgres://u:***@h/d?sslmode=disable"),
        ("postgres://u:a/b?c:d6@h", "a/b?c:d6", "postgres://u:***@h"),
        ("postgres://u:pw%2F7@h/d", "pw/7", "postgres://u:***@h/d"),
        ("postgres://u:pw%8@h/d", "pw%8", "postgres://u:***@h/d"),
        ("postgres://u:@h/d", "", "postgres://u:***@h/d"),
        // Several hosts, IPv6 hosts, a socket folder.
        (
            "postgres://u:pw9@h1:5432,h2:5433,[::1]:5434/d",
            "pw9",
            "postgres://u:***@h1:5432,h2:5433,[::1]:5434/d",
        ),
        (
            "postgresql://u:pw10@%2Fvar%2Frun%2Fpostgresql/d",
            "pw10",
            "postgresql://u:***@%2Fvar%2Frun%2Fpostgresql/d",
        ),
        // Parameters, escaped names, several passwords (the driver keeps the last).
        ("postgres://h/d?password=pw11&user=u", "pw11", "postgres://h/d?password=***&user=u"),
        ("postgres://h/d?user=u&password=pw12", "pw12", "postgres://h/d?user=u&password=***"),
        ("postgres://h?password=pw13", "pw13", "postgres://h?password=***"),
        ("postgres://h/d?pass%77ord=pw14", "pw14", "postgres://h/d?pass%77ord=***"),
        ("postgres://h/d?password=p%2Fw15%3F", "p/w15?", "postgres://h/d?password=***"),
        ("postgres://h/d?password=pw16=x/y?z", "pw16=x/y?z", "postgres://h/d?password=***"),
        ("postgres://u:pwA17@h/d?password=pwB17", "pwB17", "postgres://u:***@h/d?password=***"),
        ("postgres://?host=h&password=pw18&dbname=d", "pw18", "postgres://?host=h&password=***&dbname=d"),
        // key=value connection strings: plain, quoted, escaped, spaced around '='.
        ("host=h password=pw19", "pw19", "host=h password=***"),
        ("password=pw20 host=h user=u", "pw20", "password=*** host=h user=u"),
        ("host=h password='a b21' dbname=d", "a b21", "host=h password=*** dbname=d"),
        ("host=h password = 'it\\'s22'", "it's22", "host=h password = ***"),
        ("host=h password=back\\ slash23", "back slash23", "host=h password=***"),
        ("host=h\tpassword=/and?24 port=5", "/and?24", "host=h\tpassword=*** port=5"),
    ];

    #[test]
    fn redacts_every_form_the_driver_accepts() {
        for (location, password, shown) in CASES {
            let got = redact(location);
            assert_eq!(&got, shown, "{location}");
            if password.len() > 3 {
                assert!(!got.contains(password), "{location}: {got}");
                assert!(
                    secrets(location).iter().any(|s| s == password),
                    "{location}: {:?}",
                    secrets(location)
                );
            }
        }
    }

    #[test]
    fn a_raw_at_sign_hides_the_whole_password() {
        // The driver reads "p" as the password and "ss@h" as the host; the user meant "p@ss".
        assert_eq!(redact("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
        assert_eq!(redact("postgres://u@h/d?password=x@yz"), "postgres://u@h/d?password=***");
        let s = secrets("postgres://u:p@ss@h/d");
        assert!(s.contains(&"p@ss".to_string()) && s.contains(&"p".to_string()), "{s:?}");
    }

    #[test]
    fn paths_are_left_alone() {
        for path in
            ["./x.db", "/var/lib/jobs.db", "my jobs.db", "/tmp/password/x.db", "file:x.db?mode=ro", "a=b"]
        {
            assert_eq!(redact(path), path);
        }
        // A path that reads as a key=value string with a password is hidden all the same.
        assert_eq!(redact("password=x.db"), "password=***");
        assert!(is_postgres_url("POSTGRES://h"));
        assert!(!is_postgres_url("postgres.db"));
    }

    #[test]
    fn keyword_connection_strings_are_told_from_paths() {
        for conninfo in [
            "host=h password=x",
            "host=h dbname=d",
            " user = 'a b' port=5 ",
            "password=x/y",
            "host=h sslrootcert=/ca.pem",
        ] {
            assert!(is_keyword_conninfo(conninfo), "{conninfo}");
        }
        for path in [
            "./host=h",
            "jobs.db",
            "host=h notakey=1",
            "host=h x",
            "host='h",
            "",
            "dir/password=x",
            "my jobs.db",
        ] {
            assert!(!is_keyword_conninfo(path), "{path}");
        }
    }

    #[test]
    fn an_unterminated_quoted_password_is_hidden_to_the_end() {
        assert_eq!(redact("host=h password='no end"), "host=h password=***");
    }

    #[test]
    fn scrub_removes_raw_and_decoded_passwords() {
        assert_eq!(scrub("bad p@ss and p%40ss", "postgres://u:p%40ss@h/d"), "bad *** and ***");
        assert_eq!(scrub("auth 'a b' failed", "host=h password='a b'"), "auth *** failed");
        assert_eq!(scrub("auth /x?y failed", "postgres://u:/x?y@h/d"), "auth *** failed");
    }

    /// The driver itself reads each case's password as the table says, so the table (and so
    /// the redaction) follows the driver, not a guess about it.
    #[cfg(feature = "postgres")]
    #[test]
    fn the_driver_reads_the_same_passwords() {
        for (location, password, _) in CASES {
            let config: tokio_postgres::Config =
                location.parse().unwrap_or_else(|e| panic!("the driver refuses {location}: {e}"));
            let got = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned());
            assert_eq!(got.as_deref(), Some(*password), "{location}");
        }
        let config: tokio_postgres::Config = "postgres://u:p@ss@h/d".parse().expect("parses");
        assert_eq!(config.get_password(), Some(&b"p"[..]));
    }
}

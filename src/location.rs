//! Where a database lives: a file path, or a `postgres://` URL (with the `postgres` feature).
//! Also the one place that hides a URL's password before it is printed anywhere.

/// Whether `location` names a PostgreSQL server rather than a file.
pub(crate) fn is_postgres_url(location: &str) -> bool {
    let lower = location.get(..13).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `location` as it may be shown in messages, logs and stats: a URL's password (in its user
/// part or as a `password=` parameter) is replaced by `***`. Paths come back unchanged.
///
/// ```
/// assert_eq!(
///     batchdb::redact("postgres://ann:s3cret@db.example:5432/jobs?sslmode=disable"),
///     "postgres://ann:***@db.example:5432/jobs?sslmode=disable"
/// );
/// assert_eq!(batchdb::redact("postgres://h/db?user=ann&password=s3cret"), "postgres://h/db?user=ann&password=***");
/// assert_eq!(batchdb::redact("/var/lib/jobs.db"), "/var/lib/jobs.db");
/// ```
pub fn redact(location: &str) -> String {
    if !is_postgres_url(location) {
        return location.to_string();
    }
    let (scheme, rest) = location.split_once("://").unwrap_or(("", location));
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// The secrets of a URL, raw and percent-decoded, to scrub from messages that a driver
/// produced (they might quote a piece of the connection string).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn secrets(location: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !is_postgres_url(location) {
        return out;
    }
    let rest = location.split_once("://").map_or(location, |(_, r)| r);
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    if let Some((user, _)) = authority.rsplit_once('@') {
        if let Some((_, pw)) = user.split_once(':') {
            out.push(pw.to_string());
        }
    }
    for kv in query.unwrap_or("").split('&') {
        if let Some((k, v)) = kv.split_once('=') {
            if k.eq_ignore_ascii_case("password") {
                out.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
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

fn percent_decode(s: &str) -> String {
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

    #[test]
    fn redacts_user_password_and_parameter() {
        assert_eq!(redact("postgresql://u:p%40ss@h:1/d"), "postgresql://u:***@h:1/d");
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("postgres://h/d?password=x&user=u"), "postgres://h/d?password=***&user=u");
        assert_eq!(redact("./x.db"), "./x.db");
        assert_eq!(scrub("bad p@ss and p%40ss", "postgres://u:p%40ss@h/d"), "bad *** and ***");
        assert!(is_postgres_url("POSTGRES://h"));
        assert!(!is_postgres_url("postgres.db"));
    }
}

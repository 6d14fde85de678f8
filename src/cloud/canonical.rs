//! Canonicalisation shared by the client's signer and the emulator's verifier.
//!
//! Alibaba Cloud signs RFC 3986 percent-encoded UTF-8: only `A-Z a-z 0-9 - _ . ~` stay as
//! they are, every other byte becomes `%XY` with upper-case hex (so a space is `%20`, never
//! `+`, and `*` is `%2A`). Both signing methods and the form bodies use this encoding.

use std::fmt::Write;

/// Percent-encodes `input` as Alibaba Cloud's signers do.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() * 3 / 2);
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Sorts parameters by name (byte order) and joins them as `name=value&...`, each side
/// percent-encoded. Empty values stay in as `Name=`.
pub fn canonical_query<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(String, String)> = params
        .into_iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    // Sorting the encoded names equals sorting the raw names in byte order for every
    // name the APIs use (ASCII letters, digits and dots), and is what the SDKs do.
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Encodes parameters as an `application/x-www-form-urlencoded` body, in the given order.
pub fn form_body(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// Parses a query string or form body into decoded pairs, in order. `+` decodes to a space
/// as in HTML forms; our own encoder never produces it.
pub fn parse_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Flattens a list parameter the way the SDKs do: `Name.1=a&Name.2=b` (1-based).
pub fn push_repeated(params: &mut Vec<(String, String)>, name: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        params.push((format!("{name}.{}", i + 1), v.clone()));
    }
}

/// The UTC timestamp format of both signing methods: `yyyy-MM-ddTHH:mm:ssZ`.
pub fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_and_unicode_bytes() {
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("~"), "~");
        assert_eq!(percent_encode("+/="), "%2B%2F%3D");
        assert_eq!(percent_encode("ü"), "%C3%BC");
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode("A-Z_a.z0~9"), "A-Z_a.z0~9");
        assert_eq!(percent_encode(""), "");
        assert_eq!(percent_encode("2016-02-23T12:46:24Z"), "2016-02-23T12%3A46%3A24Z");
    }

    #[test]
    fn canonical_query_sorts_and_keeps_empty_values() {
        let q = canonical_query([("b", "2"), ("a", ""), ("TaskUid.2", "x y"), ("TaskUid.1", "*")]);
        assert_eq!(q, "TaskUid.1=%2A&TaskUid.2=x%20y&a=&b=2");
    }

    #[test]
    fn repeated_lists_are_one_based() {
        let mut p = Vec::new();
        push_repeated(&mut p, "DesktopIds", &["a".into(), "b".into()]);
        assert_eq!(
            p,
            vec![("DesktopIds.1".into(), "a".into()), ("DesktopIds.2".into(), "b".into())]
        );
    }

    #[test]
    fn form_body_round_trips_through_the_parser() {
        let params = vec![
            ("StartTime".to_string(), "2026-11-23T02:00:00+08:00".to_string()),
            ("Name".to_string(), "a b*~ü&=".to_string()),
            ("Empty".to_string(), String::new()),
        ];
        let body = form_body(&params);
        assert_eq!(
            body,
            "StartTime=2026-11-23T02%3A00%3A00%2B08%3A00&Name=a%20b%2A~%C3%BC%26%3D&Empty="
        );
        assert_eq!(parse_pairs(&body), params);
    }
}

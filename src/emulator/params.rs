//! Request parameters, with errors that name the parameter.

use super::error::{ApiFailure, ApiResult};

/// The decoded parameters of a request (query and form body together).
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and not empty.
    pub fn required(&self, name: &str) -> ApiResult<&str> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiFailure::missing(name)),
        }
    }

    pub fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A repeated parameter `Name.1`, `Name.2`, ... in index order. Gaps are an error, so
    /// a malformed list cannot be half-read.
    pub fn list(&self, name: &str, max: usize) -> ApiResult<Vec<String>> {
        let prefix = format!("{name}.");
        let mut items: Vec<(usize, String)> = Vec::new();
        for (k, v) in &self.pairs {
            if let Some(idx) = k.strip_prefix(&prefix) {
                let i: usize = idx
                    .parse()
                    .ok()
                    .filter(|i| *i >= 1)
                    .ok_or_else(|| ApiFailure::invalid(name, format!("{k} is not a 1-based index")))?;
                items.push((i, v.clone()));
            }
        }
        items.sort_by_key(|(i, _)| *i);
        for (pos, (i, _)) in items.iter().enumerate() {
            if *i != pos + 1 {
                return Err(ApiFailure::invalid(name, format!("{name}.{} is missing", pos + 1)));
            }
        }
        if items.len() > max {
            return Err(ApiFailure::invalid(
                name,
                format!("at most {max} items are allowed, got {}", items.len()),
            ));
        }
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    /// A repeated pair `Name.N.Key` / `Name.N.Value` (tags), in index order. A pair without
    /// a key is an error; a value may be empty.
    pub fn pairs_list(&self, name: &str, max: usize) -> ApiResult<Vec<(String, String)>> {
        self.objects(name, &["Key", "Value"], max)?
            .into_iter()
            .enumerate()
            .map(|(pos, mut item)| match item.remove("Key") {
                Some(key) if !key.is_empty() => Ok((key, item.remove("Value").unwrap_or_default())),
                _ => Err(ApiFailure::missing(&format!("{name}.{}.Key", pos + 1))),
            })
            .collect()
    }

    /// A repeated object `Name.N.Field` (for example `Sessions.N.DesktopId`), each with
    /// only `fields`, in index order. Gaps and unknown fields are errors.
    pub fn objects(
        &self,
        name: &str,
        fields: &[&str],
        max: usize,
    ) -> ApiResult<Vec<std::collections::BTreeMap<String, String>>> {
        let prefix = format!("{name}.");
        let shape = || {
            fields
                .iter()
                .map(|f| format!("{name}.N.{f}"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let mut items: std::collections::BTreeMap<usize, std::collections::BTreeMap<String, String>> =
            Default::default();
        for (k, v) in &self.pairs {
            let Some(rest) = k.strip_prefix(&prefix) else { continue };
            let (idx, field) = rest
                .split_once('.')
                .filter(|(_, f)| fields.contains(f))
                .ok_or_else(|| ApiFailure::invalid(name, format!("{k} is not {}", shape())))?;
            let i: usize = idx
                .parse()
                .ok()
                .filter(|i| *i >= 1)
                .ok_or_else(|| ApiFailure::invalid(name, format!("{k} is not a 1-based index")))?;
            items.entry(i).or_default().insert(field.to_string(), v.clone());
        }
        if items.len() > max {
            return Err(ApiFailure::invalid(
                name,
                format!("at most {max} items are allowed, got {}", items.len()),
            ));
        }
        items
            .into_iter()
            .enumerate()
            .map(|(pos, (i, item))| {
                if i == pos + 1 {
                    Ok(item)
                } else {
                    Err(ApiFailure::invalid(name, format!("{name}.{} is missing", pos + 1)))
                }
            })
            .collect()
    }

    /// An integer parameter with bounds and a default.
    pub fn int(&self, name: &str, min: i64, max: i64, default: i64) -> ApiResult<i64> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ApiFailure::invalid(name, format!("{v:?} is not an integer")))?;
                if n < min || n > max {
                    return Err(ApiFailure::invalid(name, format!("{n} is out of range [{min}, {max}]")));
                }
                Ok(n)
            }
        }
    }

    /// One value out of a fixed set.
    pub fn one_of<'a>(&self, name: &str, allowed: &[&'a str]) -> ApiResult<&'a str> {
        let v = self.required(name)?;
        allowed
            .iter()
            .find(|a| **a == v)
            .copied()
            .ok_or_else(|| ApiFailure::invalid(name, format!("{v:?} is not one of {}", allowed.join(", "))))
    }
}

/// Opaque NextToken for offset-based pages.
pub fn next_token(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("offset:{offset}"))
}

pub fn parse_next_token(token: Option<&str>) -> ApiResult<usize> {
    use base64::Engine;
    let Some(t) = token else { return Ok(0) };
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("offset:")?.parse().ok())
        .ok_or_else(|| ApiFailure::invalid("NextToken", "the token was not issued by this service"))
}

/// A `PageNumber`/`PageSize` page asked for (the number's name varies: `PageNum` in places).
pub struct NumberPage {
    number: usize,
    size: usize,
}

impl NumberPage {
    /// Reads the page asked for: the number from 1, the size from 1 to `max`.
    pub fn of(params: &Params, number: &str, default_size: i64, max_size: i64) -> ApiResult<Self> {
        Ok(NumberPage {
            number: params.int(number, 1, i64::from(i32::MAX), 1)? as usize,
            size: params.int("PageSize", 1, max_size, default_size)? as usize,
        })
    }

    /// The items of this page.
    pub fn slice<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .skip((self.number - 1).saturating_mul(self.size))
            .take(self.size)
            .collect()
    }
}

/// Slices `items` for a NextToken page and returns the page with the next token.
pub fn token_page<T: Clone>(
    items: &[T],
    params: &Params,
    default: i64,
    max: i64,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let size = params.int("MaxResults", 1, max, default)? as usize;
    let offset = parse_next_token(params.optional("NextToken"))?;
    let end = offset.saturating_add(size).min(items.len());
    let page = items.get(offset.min(items.len())..end).unwrap_or_default().to_vec();
    let next = (end < items.len()).then(|| next_token(end));
    Ok((page, next))
}

/// An answer that pages by NextToken: `{field: page}` plus `NextToken` when more follow.
pub fn token_page_answer<T: Clone + serde::Serialize>(
    field: &str,
    items: &[T],
    params: &Params,
    default: i64,
    max: i64,
) -> ApiResult<serde_json::Value> {
    let (page, next) = token_page(items, params, default, max)?;
    let mut body = serde_json::json!({ field: page });
    if let Some(n) = next {
        body["NextToken"] = serde_json::json!(n);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn lists_are_read_in_index_order_and_gaps_are_errors() {
        let params = p(&[("Id.2", "b"), ("Id.1", "a"), ("Id.10", "j")]);
        let err = params.list("Id", 100).unwrap_err();
        assert_eq!(err.code, "InvalidParameter.Id");
        assert!(err.message.contains("Id.3 is missing"));
        assert_eq!(
            p(&[("Id.2", "b"), ("Id.1", "a")]).list("Id", 100).unwrap(),
            vec!["a", "b"]
        );
        assert!(
            p(&[("Id.1", "a"), ("Id.2", "b")])
                .list("Id", 1)
                .unwrap_err()
                .message
                .contains("at most 1")
        );
        assert!(p(&[("Id.0", "a")]).list("Id", 5).is_err());
    }

    #[test]
    fn required_and_int_name_the_parameter() {
        let params = p(&[("MaxResults", "500"), ("Empty", "")]);
        assert_eq!(params.required("Empty").unwrap_err().code, "MissingParameter");
        assert!(
            params
                .required("RegionId")
                .unwrap_err()
                .message
                .contains("\"RegionId\"")
        );
        let e = params.int("MaxResults", 1, 100, 20).unwrap_err();
        assert_eq!(e.code, "InvalidParameter.MaxResults");
        assert_eq!(params.int("PageSize", 1, 100, 10).unwrap(), 10);
    }

    #[test]
    fn token_pages_walk_everything_once() {
        let items: Vec<u32> = (0..25).collect();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut pairs = vec![("MaxResults".to_string(), "10".to_string())];
            if let Some(t) = &token {
                pairs.push(("NextToken".into(), t.clone()));
            }
            let (page, next) = token_page(&items, &Params::new(pairs), 20, 100).unwrap();
            seen.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, items);
        assert_eq!(
            parse_next_token(Some("garbage")).unwrap_err().code,
            "InvalidParameter.NextToken"
        );
    }
}

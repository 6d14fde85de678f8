//! Typed operations, with the official field names, and collectors that follow every page.

pub mod appstream;
pub mod ecd;
pub mod sts;
pub mod swas;

use std::future::Future;

use serde::{Deserialize, Deserializer};

use crate::cloud::error::CloudError;

/// One page of a `PageNumber`/`PageSize` listing.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub page_size: i64,
    pub total_count: i64,
}

/// Reads page after page (from 1) until every item is read, or a page comes back empty.
pub(crate) async fn all_pages<T, F, Fut>(fetch: F) -> Result<Vec<T>, CloudError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Page<T>, CloudError>>,
{
    let mut out = Vec::new();
    each_page(fetch, |items| out.extend(items)).await?;
    Ok(out)
}

/// [`all_pages`], handing each page's items to `on_items` as it arrives instead of keeping
/// them: a caller that files them elsewhere holds one copy of the list, not two.
pub(crate) async fn each_page<T, F, Fut>(mut fetch: F, mut on_items: impl FnMut(Vec<T>)) -> Result<(), CloudError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Page<T>, CloudError>>,
{
    let mut page = 1i64;
    loop {
        let p = fetch(page).await?;
        let got = p.items.len() as i64;
        on_items(p.items);
        let size = if p.page_size > 0 { p.page_size } else { 100 };
        if got == 0 || page.saturating_mul(size) >= p.total_count {
            return Ok(());
        }
        page += 1;
    }
}

/// Reads page after page of a `NextToken`/`MaxResults` listing until the cloud gives no
/// further token. `fetch` gets the token of the page to read (`None` for the first) and
/// returns its items and the next token.
pub(crate) async fn all_token_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, CloudError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), CloudError>>,
{
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = fetch(token).await?;
        out.extend(items);
        match next.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Accepts a count that arrives as a JSON number or as a string (SWAS documents its
/// pagination counts as strings).
pub fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(i64),
        Str(String),
        Null(()),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(n),
        Raw::Str(s) if s.trim().is_empty() => Ok(0),
        Raw::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
        Raw::Null(()) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "lenient_i64", default)]
        n: i64,
    }

    #[test]
    fn counts_parse_from_numbers_and_strings() {
        assert_eq!(serde_json::from_str::<T>(r#"{"n": 4}"#).unwrap().n, 4);
        assert_eq!(serde_json::from_str::<T>(r#"{"n": "4"}"#).unwrap().n, 4);
        assert_eq!(serde_json::from_str::<T>(r#"{"n": ""}"#).unwrap().n, 0);
        assert_eq!(serde_json::from_str::<T>(r#"{}"#).unwrap().n, 0);
        assert!(serde_json::from_str::<T>(r#"{"n": "four"}"#).is_err());
    }
}

//! The two Alibaba Cloud request-signing methods, as pure functions over canonical inputs.
//!
//! - V2: `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`; every parameter (query and
//!   form body) is signed and the result travels as the `Signature` parameter.
//! - V3: `ACS3-HMAC-SHA256`; a canonical request over the query, the signed headers and
//!   the hashed payload, sent in the `Authorization` header.
//!
//! The emulator verifies with the very same functions, so the two can never disagree.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::canonical::{canonical_query, percent_encode};

/// The `Authorization` scheme of V3.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Which signing method the client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SignatureVersion {
    /// RPC signature `HMAC-SHA1` / `SignatureVersion=1.0` (Alibaba calls it "V2"; discontinued).
    V2,
    /// `ACS3-HMAC-SHA256` (the SDK default).
    #[default]
    V3,
}

impl std::fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureVersion::V2 => "v2",
            SignatureVersion::V3 => "v3",
        })
    }
}

/// V2 string to sign: `METHOD&%2F&percentEncode(canonicalQuery)` over every parameter
/// except `Signature`.
pub fn v2_string_to_sign<'a, I>(method: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let query = canonical_query(params.into_iter().filter(|(k, _)| *k != "Signature"));
    format!("{method}&{}&{}", percent_encode("/"), percent_encode(&query))
}

/// V2 signature: Base64(HMAC-SHA1(secret + "&", stringToSign)).
pub fn v2_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Lower-case hex SHA-256, the V3 `x-acs-content-sha256` of a body.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether a header takes part in a V3 signature, as the SDKs choose them.
pub fn v3_signs_header(lower_name: &str) -> bool {
    lower_name.starts_with("x-acs-") || lower_name == "host" || lower_name == "content-type"
}

/// The V3 canonical request and its `SignedHeaders` list.
///
/// `headers` are the headers to sign, with any case of name; values are trimmed.
pub fn v3_canonical_request<'a, Q, H>(method: &str, query: Q, headers: H, hashed_payload: &str) -> (String, String)
where
    Q: IntoIterator<Item = (&'a str, &'a str)>,
    H: IntoIterator<Item = (&'a str, &'a str)>,
{
    // Repeated names merge into one line with their values sorted and joined by commas,
    // as the SDKs do (the official SDK test vector below depends on it).
    let mut merged: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (k, v) in headers {
        merged.entry(k.to_ascii_lowercase()).or_default().push(v.trim());
    }
    let mut canonical_headers = String::new();
    for (k, values) in merged.iter_mut() {
        values.sort_unstable();
        canonical_headers.push_str(k);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let signed_headers = merged.keys().map(String::as_str).collect::<Vec<_>>().join(";");
    let request = format!(
        "{method}\n/\n{}\n{canonical_headers}\n{signed_headers}\n{hashed_payload}",
        canonical_query(query)
    );
    (request, signed_headers)
}

/// V3 string to sign: the algorithm name and the hex SHA-256 of the canonical request.
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!("{V3_ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// V3 signature: hex(HMAC-SHA256(secret, stringToSign)). The key has no `&` suffix.
pub fn v3_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The V3 `Authorization` header value.
pub fn v3_authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!("{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}")
}

/// A parsed V3 `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct V3Authorization {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
pub fn parse_v3_authorization(value: &str) -> Option<V3Authorization> {
    let rest = value.strip_prefix(V3_ALGORITHM)?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.split(';').map(str::to_string).collect()),
            "Signature" => signature = Some(v.to_string()),
            _ => {}
        }
    }
    Some(V3Authorization {
        access_key_id: credential?,
        signed_headers: signed?,
        signature: signature?,
    })
}

/// Compares two signatures in time independent of where they first differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_v2(method: &str, params: &[(&str, &str)], secret: &str) -> String {
        v2_signature(secret, &v2_string_to_sign(method, params.iter().copied()))
    }

    const DOC_PARAMS: &[(&str, &str)] = &[
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Format", "XML"),
        ("AccessKeyId", "testid"),
        ("Action", "DescribeRegions"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("Version", "2014-05-26"),
        ("SignatureVersion", "1.0"),
    ];

    #[test]
    fn v2_official_documentation_vector() {
        let sts = v2_string_to_sign("GET", DOC_PARAMS.iter().copied());
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(v2_signature("testsecret", &sts), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert_eq!(
            sign_v2("POST", DOC_PARAMS, "testsecret"),
            "MxbnVAM4w6sft9xjVpe/GCKueuk="
        );
    }

    #[test]
    fn v2_ignores_a_signature_parameter() {
        let mut with_sig = DOC_PARAMS.to_vec();
        with_sig.push(("Signature", "whatever"));
        assert_eq!(sign_v2("GET", &with_sig, "testsecret"), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    #[test]
    fn v2_sdk_vectors_with_empty_method_and_values() {
        assert_eq!(
            sign_v2("", &[("test", "ok")], "accessKeySecret"),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
        assert_eq!(
            v2_string_to_sign("GET", [("key", "value"), ("q", "value")]),
            "GET&%2F&key%3Dvalue%26q%3Dvalue"
        );
        assert_eq!(
            v2_string_to_sign("GET", [("key", "value"), ("q", "http://domain/?q=value&q2=value2")]),
            "GET&%2F&key%3Dvalue%26q%3Dhttp%253A%252F%252Fdomain%252F%253Fq%253Dvalue%2526q2%253Dvalue2"
        );
        let mut params = vec![
            ("AccessKeyId", "accessKeyId"),
            ("Action", ""),
            ("Format", "JSON"),
            ("RegionId", "regionId"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "MOCK_UUID"),
            ("SignatureType", ""),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "mock date"),
            ("Version", ""),
        ];
        assert_eq!(
            v2_string_to_sign("GET", params.iter().copied()),
            "GET&%2F&AccessKeyId%3DaccessKeyId%26Action%3D%26Format%3DJSON%26RegionId%3DregionId%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3DMOCK_UUID%26SignatureType%3D%26SignatureVersion%3D1.0%26Timestamp%3Dmock%2520date%26Version%3D"
        );
        assert_eq!(
            sign_v2("GET", &params, "accessKeySecret"),
            "7loPmFjvDnzOVnQeQNj85S6nFGY="
        );
        params.push(("SecurityToken", "accessKeyStsToken"));
        assert_eq!(
            sign_v2("GET", &params, "accessKeySecret"),
            "5Nxdcler+ihqWqv0Hr2On4PsBf4="
        );
    }

    #[test]
    fn v2_derived_set_desktop_maintenance_vectors() {
        let mut params = vec![
            ("AccessKeyId", "testid"),
            ("Action", "SetDesktopMaintenance"),
            ("DesktopIds.1", "ecd-aaaa"),
            ("DesktopIds.2", "ecd-bbbb"),
            ("Format", "JSON"),
            ("Mode", "ENTER"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2020-09-30"),
        ];
        assert_eq!(sign_v2("POST", &params, "testsecret"), "5Na5wvouXQtbDPBAx+lcy/8zfbM=");
        params.push(("SecurityToken", "token+/="));
        assert_eq!(sign_v2("POST", &params, "testsecret"), "8AeTs3ImLkVtT9kmLsF/QxKMtYs=");
    }

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn v3_headers<'a>(host: &'a str, action: &'a str, version: &'a str, hash: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("host", host),
            ("x-acs-action", action),
            ("x-acs-version", version),
            ("x-acs-date", "2026-11-22T08:00:00Z"),
            ("x-acs-signature-nonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("x-acs-content-sha256", hash),
        ]
    }

    fn sign_v3(query: &[(&str, &str)], headers: &[(&str, &str)], hash: &str) -> String {
        let (req, _) = v3_canonical_request("POST", query.iter().copied(), headers.iter().copied(), hash);
        v3_signature("testsecret", &v3_string_to_sign(&req))
    }

    #[test]
    fn v3_vector_a_query_with_unicode_space_and_star() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
        let query = [
            ("RegionId", "cn-hangzhou"),
            ("TaskUid.1", "aot-1"),
            ("TaskUid.2", "a b*~ü"),
        ];
        assert_eq!(
            canonical_query(query.iter().copied()),
            "RegionId=cn-hangzhou&TaskUid.1=aot-1&TaskUid.2=a%20b%2A~%C3%BC"
        );
        let headers = v3_headers(
            "ecd.cn-hangzhou.aliyuncs.com",
            "DescribeFotaTasks",
            "2020-09-30",
            EMPTY_SHA256,
        );
        assert_eq!(
            sign_v3(&query, &headers, EMPTY_SHA256),
            "d3444fe30aac8e56d44e514125c94b33f30cc42e3a37cc45b18ba6010409cc3c"
        );
    }

    #[test]
    fn v3_vector_b_form_body() {
        let body = "AppInstanceGroupId=aig-1&BizRegionId=cn-hangzhou&OtaType=Fota&StartTime=2026-11-23T02%3A00%3A00Z&TaskId=ota-1";
        let hash = sha256_hex(body.as_bytes());
        assert_eq!(hash, "599142f45646b764b2e70ba57f20dbcf9c84eff1bc4a1e0eb7146a086396a935");
        let mut headers = v3_headers(
            "appstream-center.cn-shanghai.aliyuncs.com",
            "ApproveOtaTask",
            "2021-09-01",
            &hash,
        );
        headers.push(("content-type", "application/x-www-form-urlencoded"));
        assert_eq!(
            sign_v3(&[], &headers, &hash),
            "597bf4e9a433036cfcb3ef25be34a271994ce0d5dfd03bbe5da3e2883f92ebef"
        );
    }

    #[test]
    fn v3_vector_c_security_token() {
        let mut headers = v3_headers(
            "ecd.cn-hangzhou.aliyuncs.com",
            "DescribeFotaTasks",
            "2020-09-30",
            EMPTY_SHA256,
        );
        headers.push(("x-acs-security-token", "token+/="));
        assert_eq!(
            sign_v3(&[("RegionId", "cn-hangzhou")], &headers, EMPTY_SHA256),
            "ab9351b48d7d3e9ce7320cb679c1f08bfc6dddfe53bff8174ed3eb1cbb0c7d89"
        );
    }

    #[test]
    fn v3_official_sdk_vector_merges_repeated_headers() {
        // darabonba-openapi utils Test_GetAuthorization: empty method, empty value kept,
        // `x-acs-test` and `x-acs-TEST` merged into one signed header.
        let (req, signed) = v3_canonical_request(
            "",
            [("test", "ok"), ("empty", "")],
            [("x-acs-test", "http"), ("x-acs-TEST", "https")],
            "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
        );
        let signature = v3_signature("secret", &v3_string_to_sign(&req));
        assert_eq!(
            v3_authorization("acesskey", &signed, &signature),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"
        );
    }

    #[test]
    fn v3_header_order_and_case_do_not_matter() {
        let headers = v3_headers("h", "A", "V", EMPTY_SHA256);
        let mut shuffled: Vec<(&str, &str)> = headers.iter().rev().copied().collect();
        shuffled[0] = ("X-ACS-Content-SHA256", EMPTY_SHA256);
        let (a, sa) = v3_canonical_request("POST", [], headers.iter().copied(), EMPTY_SHA256);
        let (b, sb) = v3_canonical_request("POST", [], shuffled.iter().copied(), EMPTY_SHA256);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!(
            sa,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
    }

    #[test]
    fn v3_authorization_round_trip() {
        let h = v3_authorization("testid", "host;x-acs-date", "abc");
        assert_eq!(
            h,
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-date,Signature=abc"
        );
        let parsed = parse_v3_authorization(&h).unwrap();
        assert_eq!(parsed.access_key_id, "testid");
        assert_eq!(parsed.signed_headers, vec!["host", "x-acs-date"]);
        assert_eq!(parsed.signature, "abc");
        assert!(parse_v3_authorization("AWS4 Credential=x").is_none());
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=x").is_none());
    }

    #[test]
    fn constant_time_eq_compares_content() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}

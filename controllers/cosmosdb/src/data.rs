//! The Cosmos DB data plane, signed with the master key: the account read
//! (`GET /` on the global and each regional endpoint) and single documents
//! (what the lab's harness writes and reads).
//!
//! The signature is the REST reference's master-key token: HMAC-SHA256 with
//! the base64-decoded key over `verb\nresourceType\nresourceLink\nx-ms-date\n\n`
//! (verb, type and date lower-cased), sent url-encoded as
//! `type=master&ver=1.0&sig={base64}`.

use crate::error::{CResult, CosmosError};
use crate::secret::Secret;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use switchyard_controller::ErrorKind;

/// Data-plane REST API version.
pub const DATA_API_VERSION: &str = "2018-12-31";

/// Percent-encode everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `authorization` header value for one request.
pub fn master_key_token(
    key: &Secret,
    verb: &str,
    resource_type: &str,
    resource_link: &str,
    date: &str,
) -> CResult<String> {
    use hmac::{KeyInit, Mac};
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key.expose().trim())
        .map_err(|_| CosmosError::config("connection.key_env", "the master key is not base64"))?;
    let text = format!(
        "{}\n{}\n{}\n{}\n\n",
        verb.to_lowercase(),
        resource_type.to_lowercase(),
        resource_link,
        date.to_lowercase()
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&raw)
        .map_err(|_| CosmosError::config("connection.key_env", "unusable master key"))?;
    mac.update(text.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(encode(&format!("type=master&ver=1.0&sig={sig}")))
}

/// One entry of `writableLocations` / `readableLocations`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DataLocation {
    /// Location name.
    pub name: String,
    /// Its endpoint.
    #[serde(default)]
    pub database_account_endpoint: Option<String>,
}

/// `GET /` of the data plane.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DataAccount {
    /// Regions taking writes, as this endpoint sees it.
    #[serde(default)]
    pub writable_locations: Vec<DataLocation>,
    /// Regions serving reads.
    #[serde(default)]
    pub readable_locations: Vec<DataLocation>,
    /// Multi-region writes.
    #[serde(default)]
    pub enable_multiple_write_locations: bool,
}

/// The data-plane client.
#[derive(Debug, Clone)]
pub struct DataPlane {
    http: reqwest::Client,
}

impl DataPlane {
    /// Over `http` (which trusts the configured CA).
    pub fn new(http: reqwest::Client) -> Self {
        DataPlane { http }
    }

    async fn send(
        &self,
        key: &Secret,
        method: reqwest::Method,
        endpoint: &str,
        path: &str,
        body: Option<&Value>,
    ) -> CResult<(u16, Value)> {
        let (rtype, link) = resource_of(path);
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let auth = master_key_token(key, method.as_str(), &rtype, &link, &date)?;
        let url = format!(
            "{}/{}",
            endpoint.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("x-ms-date", &date)
            .header("x-ms-version", DATA_API_VERSION)
            .header("authorization", auth)
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.map_err(|e| CosmosError::Transport {
            what: format!("data plane {endpoint} unreachable"),
            source: e,
        })?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status == 401 || status == 403 && v["code"] != "Forbidden" {
            return Err(CosmosError::new(
                ErrorKind::Refused,
                format!(
                    "data plane {endpoint} refused the master key ({status}): {}",
                    v["message"].as_str().unwrap_or("")
                ),
            ));
        }
        Ok((status, v))
    }

    /// `GET /` on `endpoint`.
    pub async fn account(&self, key: &Secret, endpoint: &str) -> CResult<DataAccount> {
        let (status, v) = self
            .send(key, reqwest::Method::GET, endpoint, "", None)
            .await?;
        if status != 200 {
            return Err(CosmosError::new(
                ErrorKind::Unreachable,
                format!("data plane {endpoint}: account read answered {status}"),
            ));
        }
        serde_json::from_value(v).map_err(|e| {
            CosmosError::new(
                ErrorKind::Protocol,
                format!("data plane {endpoint}: unexpected account body: {e}"),
            )
        })
    }

    /// Create document `{"id": id, ...}` in `dbs/{db}/colls/{coll}` through
    /// `endpoint`; returns the status (201 created, 403 not a write region, …).
    pub async fn create_document(
        &self,
        key: &Secret,
        endpoint: &str,
        collection: &str,
        doc: &Value,
    ) -> CResult<u16> {
        let (status, _) = self
            .send(
                key,
                reqwest::Method::POST,
                endpoint,
                &format!("{collection}/docs"),
                Some(doc),
            )
            .await?;
        Ok(status)
    }

    /// Read document `id` of `dbs/{db}/colls/{coll}` through `endpoint`.
    pub async fn read_document(
        &self,
        key: &Secret,
        endpoint: &str,
        collection: &str,
        id: &str,
    ) -> CResult<Option<Value>> {
        let (status, v) = self
            .send(
                key,
                reqwest::Method::GET,
                endpoint,
                &format!("{collection}/docs/{id}"),
                None,
            )
            .await?;
        Ok((status == 200).then_some(v))
    }
}

/// Resource type and link of a path, as the signature uses them:
/// `dbs/d/colls/c/docs` → (`docs`, `dbs/d/colls/c`), `dbs/d/colls/c/docs/x`
/// → (`docs`, `dbs/d/colls/c/docs/x`), `` → (``, ``).
pub fn resource_of(path: &str) -> (String, String) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.len() {
        0 => (String::new(), String::new()),
        n if n % 2 == 1 => (segs[n - 1].to_string(), segs[..n - 1].join("/")),
        n => (segs[n - 2].to_string(), segs.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_rest_reference_example() {
        // The worked example of "Access control on Azure Cosmos DB
        // resources": GET of dbs/ToDoList on Thu, 27 Apr 2017 00:51:12 GMT.
        let key = Secret::new(
            "dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw==",
        );
        let t = master_key_token(
            &key,
            "GET",
            "dbs",
            "dbs/ToDoList",
            "Thu, 27 Apr 2017 00:51:12 GMT",
        )
        .unwrap();
        assert_eq!(
            t,
            "type%3Dmaster%26ver%3D1.0%26sig%3Dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2Bc%2Bc%3D"
        );
    }
}

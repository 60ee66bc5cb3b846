//! A small Azure Resource Manager client for `Microsoft.DocumentDB/databaseAccounts`:
//! the account read, the three failover actions and their asynchronous
//! operations (`202 Accepted` + `Azure-AsyncOperation`, polled with
//! `Retry-After` until `Succeeded`, `Failed` or `Canceled`).

use crate::config::API_VERSION;
use crate::credential::TokenSource;
use crate::error::{CResult, CosmosError};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use switchyard_controller::ErrorKind;

/// ARM location names compare case-insensitively and without spaces.
pub fn same_location(a: &str, b: &str) -> bool {
    let n = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect()
    };
    n(a) == n(b)
}

/// `properties.consistencyPolicy`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyPolicy {
    /// `Strong`, `BoundedStaleness`, `Session`, `ConsistentPrefix`, `Eventual`.
    pub default_consistency_level: String,
    /// Bounded staleness: versions a region may lag.
    #[serde(default)]
    pub max_staleness_prefix: Option<u64>,
    /// Bounded staleness: seconds a region may lag.
    #[serde(default)]
    pub max_interval_in_seconds: Option<u64>,
}

/// One entry of `writeLocations` / `readLocations` / `locations`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArmLocation {
    /// `East US`.
    pub location_name: String,
    /// Regional data-plane endpoint.
    #[serde(default)]
    pub document_endpoint: Option<String>,
    /// Failover priority.
    #[serde(default)]
    pub failover_priority: Option<u32>,
    /// `Succeeded`, `Creating`, … (`Offline` after `offlineRegion` in the lab).
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// One entry of `failoverPolicies`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    /// Location name.
    pub location_name: String,
    /// Priority; 0 is the write region.
    pub failover_priority: u32,
}

/// The properties of the account Switchyard reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccountProperties {
    /// `Succeeded`, `Updating`, …
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// Consistency policy.
    #[serde(default)]
    pub consistency_policy: Option<ConsistencyPolicy>,
    /// Service-managed failover.
    #[serde(default)]
    pub enable_automatic_failover: bool,
    /// Multi-region writes.
    #[serde(default)]
    pub enable_multiple_write_locations: bool,
    /// Write regions.
    #[serde(default)]
    pub write_locations: Vec<ArmLocation>,
    /// Read regions.
    #[serde(default)]
    pub read_locations: Vec<ArmLocation>,
    /// Every region of the account.
    #[serde(default)]
    pub locations: Vec<ArmLocation>,
    /// Failover priorities.
    #[serde(default)]
    pub failover_policies: Vec<FailoverPolicy>,
}

/// `GET {account}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Account {
    /// Resource id.
    pub id: String,
    /// Properties.
    pub properties: AccountProperties,
}

impl Account {
    /// Whether an operation holds the account (`provisioningState` is not `Succeeded`).
    pub fn updating(&self) -> bool {
        self.properties
            .provisioning_state
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("Succeeded"))
    }

    /// Failover priority of `location`.
    pub fn priority(&self, location: &str) -> Option<u32> {
        self.properties
            .failover_policies
            .iter()
            .find(|p| same_location(&p.location_name, location))
            .map(|p| p.failover_priority)
    }

    /// Whether `location` is offline (listed, but neither read nor write region).
    pub fn offline(&self, location: &str) -> bool {
        let p = &self.properties;
        let listed =
            |v: &[ArmLocation]| v.iter().any(|l| same_location(&l.location_name, location));
        listed(&p.locations) && !listed(&p.read_locations) && !listed(&p.write_locations)
    }
}

/// Status of an asynchronous operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    /// Not finished.
    InProgress,
    /// Finished.
    Succeeded,
    /// Finished with an error (code: message).
    Failed(String),
    /// Ended before finishing.
    Canceled,
}

/// The ARM client of one account.
#[derive(Debug)]
pub struct Arm {
    http: reqwest::Client,
    base: String,
    account: String,
    tokens: TokenSource,
}

/// Attempts for a request refused with a temporary status.
const ATTEMPTS: u32 = 4;
/// Longest `Retry-After` honoured in one wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Arm {
    /// A client for `account` (resource id) at `base`.
    pub fn new(http: reqwest::Client, base: &str, account: &str, tokens: TokenSource) -> Self {
        Arm {
            http,
            base: base.to_string(),
            account: account.to_string(),
            tokens,
        }
    }

    /// One request with a bearer token. Temporary refusals (409, 412 — the
    /// account's lock —, 429, 5xx on reads) are retried after `Retry-After`;
    /// the last refusal is returned with it.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> CResult<(u16, reqwest::header::HeaderMap, Value)> {
        // Never hand the token to a host other than the configured ARM
        // endpoint (operation URLs come from responses and the journal).
        if !url.starts_with(&format!("{}/", self.base)) {
            return Err(CosmosError::new(
                ErrorKind::Protocol,
                format!(
                    "refusing to send the ARM token to `{url}`: not under {}",
                    self.base
                ),
            ));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.tokens.token().await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .timeout(Duration::from_secs(60));
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await.map_err(|e| CosmosError::Transport {
                what: format!("ARM {method} {} unreachable", strip_query(url)),
                source: e,
            })?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap_or_default();
            let v: Value = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            if status < 400 {
                return Ok((status, headers, v));
            }
            let err = CosmosError::Arm {
                status,
                code: v["error"]["code"].as_str().map(String::from),
                message: v["error"]["message"]
                    .as_str()
                    .unwrap_or("no error message")
                    .to_string(),
                retry_after: retry_after(&headers),
            };
            if status == 401 && attempt == 1 {
                // A token revoked or expired early: fetch a new one once.
                self.tokens.invalidate().await;
                continue;
            }
            // Repeating a POST after a 5xx could start the action twice.
            let repeatable = matches!(status, 409 | 412 | 429)
                || (status >= 500 && method == reqwest::Method::GET);
            if !repeatable || attempt >= ATTEMPTS {
                return Err(err);
            }
            let wait = retry_after(&headers)
                .unwrap_or(Duration::from_secs(1 << attempt))
                .min(MAX_WAIT);
            tracing::debug!(
                status,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "ARM asked to retry"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// `GET {account}`.
    pub async fn account(&self) -> CResult<Account> {
        let url = format!("{}{}?api-version={API_VERSION}", self.base, self.account);
        let (_, _, v) = self.send(reqwest::Method::GET, &url, None).await?;
        serde_json::from_value(v).map_err(|e| {
            CosmosError::new(
                ErrorKind::Protocol,
                format!("ARM account read: unexpected body: {e}"),
            )
        })
    }

    /// `POST {account}/{action}`: the operation URL to poll, or `None` when
    /// ARM finished synchronously (200/204).
    pub async fn start(&self, action: &str, body: &Value) -> CResult<Option<String>> {
        let url = format!(
            "{}{}/{action}?api-version={API_VERSION}",
            self.base, self.account
        );
        let (status, headers, _) = self.send(reqwest::Method::POST, &url, Some(body)).await?;
        if status == 202 {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            return h("azure-asyncoperation")
                .or_else(|| h("location"))
                .map(Some)
                .ok_or_else(|| {
                    CosmosError::new(
                        ErrorKind::Protocol,
                        format!("{action}: 202 without Azure-AsyncOperation or Location"),
                    )
                });
        }
        Ok(None)
    }

    /// One poll of an operation URL: its status and the `Retry-After` to honour.
    pub async fn poll(&self, url: &str) -> CResult<(OpStatus, Option<Duration>)> {
        let (status, headers, v) = self.send(reqwest::Method::GET, url, None).await?;
        let wait = retry_after(&headers);
        // An `operationResults` (Location) URL answers 202 while running.
        if status == 202 {
            return Ok((OpStatus::InProgress, wait));
        }
        if status == 204 || v.is_null() {
            return Ok((OpStatus::Succeeded, wait));
        }
        let s = match v["status"].as_str().unwrap_or("") {
            "Succeeded" => OpStatus::Succeeded,
            "Failed" => OpStatus::Failed(format!(
                "{}: {}",
                v["error"]["code"].as_str().unwrap_or("Failed"),
                v["error"]["message"].as_str().unwrap_or("no message")
            )),
            "Canceled" | "Cancelled" => OpStatus::Canceled,
            _ => OpStatus::InProgress,
        };
        Ok((s, wait))
    }
}

/// A URL without its query (for messages).
pub fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

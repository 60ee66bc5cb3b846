//! ARM access tokens: client secret, workload identity, managed identity or
//! the Azure CLI, cached until shortly before they expire.
//!
//! These are the flows `azure_identity` implements; they are a few HTTP
//! requests each, so they are written here on the same `reqwest` client
//! instead of pulling in the Azure SDK's pipeline (see docs/cosmosdb.md).

use crate::config::Credential;
use crate::error::{CResult, CosmosError};
use crate::secret::Secret;
use serde::Deserialize;
use std::time::{Duration, Instant};
use switchyard_controller::ErrorKind;
use tokio::sync::Mutex;

/// Tokens for one audience (the ARM endpoint), cached.
#[derive(Debug)]
pub struct TokenSource {
    credential: Credential,
    scope: String,
    http: reqwest::Client,
    cached: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CliReply {
    access_token: String,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
}

fn secs(v: &Option<serde_json::Value>) -> u64 {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(300),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(300),
        _ => 300,
    }
}

impl TokenSource {
    /// Tokens for `arm_endpoint` (scope `{arm_endpoint}/.default`).
    pub fn new(credential: Credential, arm_endpoint: &str, http: reqwest::Client) -> Self {
        TokenSource {
            credential,
            scope: format!("{arm_endpoint}/.default"),
            http,
            cached: Mutex::new(None),
        }
    }

    /// A valid token, from the cache when it has five more minutes to live.
    pub async fn token(&self) -> CResult<Secret> {
        let mut cached = self.cached.lock().await;
        if let Some((t, exp)) = cached.as_ref() {
            if *exp > Instant::now() + Duration::from_secs(300) {
                return Ok(t.clone());
            }
        }
        let (tok, ttl) = self.fetch().await?;
        *cached = Some((tok.clone(), Instant::now() + Duration::from_secs(ttl)));
        Ok(tok)
    }

    /// Forget the cached token (after a 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> CResult<(Secret, u64)> {
        match &self.credential {
            Credential::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => {
                let secret = secret.load("connection.azure.client_secret")?;
                self.client_credentials(
                    authority,
                    tenant,
                    &[
                        ("client_id", client_id.as_str()),
                        ("client_secret", secret.expose()),
                    ],
                )
                .await
            }
            Credential::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                token_file,
            } => {
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    CosmosError::config(
                        "connection.azure.credential",
                        format!("cannot read AZURE_FEDERATED_TOKEN_FILE `{token_file}`: {e}"),
                    )
                })?;
                self.client_credentials(
                    authority,
                    tenant,
                    &[
                        ("client_id", client_id.as_str()),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", assertion.trim()),
                    ],
                )
                .await
            }
            Credential::ManagedIdentity { client_id } => {
                let resource = self.scope.trim_end_matches("/.default");
                let mut url = format!(
                    "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                    crate::data::encode(resource)
                );
                if let Some(c) = client_id {
                    url.push_str(&format!("&client_id={}", crate::data::encode(c)));
                }
                let r = self
                    .http
                    .get(url)
                    .header("Metadata", "true")
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| CosmosError::Transport {
                        what: "managed identity endpoint (IMDS) unreachable".into(),
                        source: e,
                    })?;
                self.token_reply(r, "managed identity").await
            }
            Credential::AzureCli => {
                let resource = self.scope.trim_end_matches("/.default").to_string();
                let out = tokio::process::Command::new("az")
                    .args([
                        "account",
                        "get-access-token",
                        "--output",
                        "json",
                        "--resource",
                    ])
                    .arg(&resource)
                    .output()
                    .await
                    .map_err(|e| {
                        CosmosError::config(
                            "connection.azure.credential",
                            format!("azure_cli: cannot run `az`: {e}"),
                        )
                    })?;
                if !out.status.success() {
                    return Err(CosmosError::new(
                        ErrorKind::Refused,
                        format!(
                            "azure_cli: `az account get-access-token` failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    ));
                }
                let r: CliReply = serde_json::from_slice(&out.stdout).map_err(|e| {
                    CosmosError::new(
                        ErrorKind::Protocol,
                        format!("azure_cli: unexpected output: {e}"),
                    )
                })?;
                // `expires_on` is a Unix time in recent CLIs.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let ttl = secs(&r.expires_on).saturating_sub(now).max(60);
                Ok((Secret::new(r.access_token), ttl))
            }
        }
    }

    async fn client_credentials(
        &self,
        authority: &str,
        tenant: &str,
        fields: &[(&str, &str)],
    ) -> CResult<(Secret, u64)> {
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let mut body = format!(
            "grant_type=client_credentials&scope={}",
            crate::data::encode(&self.scope)
        );
        for (k, v) in fields {
            body.push_str(&format!("&{k}={}", crate::data::encode(v)));
        }
        let r = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| CosmosError::Transport {
                what: format!("token endpoint {url} unreachable"),
                source: e,
            })?;
        self.token_reply(r, "token endpoint").await
    }

    async fn token_reply(&self, r: reqwest::Response, what: &str) -> CResult<(Secret, u64)> {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        if status != 200 {
            // Entra ID errors carry `error` and `error_description`; neither
            // holds the secret.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let code = v["error"].as_str().map(String::from);
            let message = v["error_description"]
                .as_str()
                .unwrap_or("no error description")
                .to_string();
            return Err(CosmosError::Arm {
                status: if status == 400 { 401 } else { status },
                code,
                message: format!("{what} refused a token: {message}"),
                retry_after: None,
            });
        }
        let t: TokenReply = serde_json::from_str(&text).map_err(|e| {
            CosmosError::new(
                ErrorKind::Protocol,
                format!("{what}: unexpected token reply: {e}"),
            )
        })?;
        Ok((Secret::new(t.access_token), secs(&t.expires_in)))
    }
}

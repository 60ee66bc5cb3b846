//! The controller's configuration, validated from a topology store.

use crate::error::{CResult, CosmosError};
use crate::secret::SecretSource;
use switchyard_topology::{Store, StoreKind};

/// ARM `api-version` of `Microsoft.DocumentDB` the controller speaks.
pub const API_VERSION: &str = "2024-11-15";
/// Public-cloud ARM endpoint.
pub const DEFAULT_ARM: &str = "https://management.azure.com";
/// Public-cloud Entra ID authority host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// How ARM tokens are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// OAuth2 client credentials with a client secret.
    ClientSecret {
        /// Authority host, no trailing slash.
        authority: String,
        /// Tenant id.
        tenant: String,
        /// Client id.
        client_id: String,
        /// Where the secret is.
        secret: SecretSource,
    },
    /// Workload identity federation: a projected service-account token
    /// (`AZURE_FEDERATED_TOKEN_FILE`) as the client assertion.
    WorkloadIdentity {
        /// Authority host.
        authority: String,
        /// Tenant id.
        tenant: String,
        /// Client id.
        client_id: String,
        /// File with the federated token.
        token_file: String,
    },
    /// The Azure instance metadata service (IMDS) of a VM / AKS node.
    ManagedIdentity {
        /// User-assigned identity's client id (system-assigned when absent).
        client_id: Option<String>,
    },
    /// `az account get-access-token` of a logged-in Azure CLI.
    AzureCli,
}

/// One account location: a topology member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationSpec {
    /// Member name.
    pub member: String,
    /// Topology region.
    pub region: String,
    /// Azure location name (`East US`).
    pub location: String,
}

/// Everything the controller needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosConfig {
    /// Store name.
    pub store: String,
    /// Full ARM resource id of the account.
    pub account_id: String,
    /// Account name (last segment of the id).
    pub account_name: String,
    /// ARM endpoint, no trailing slash.
    pub arm_endpoint: String,
    /// How to get ARM tokens.
    pub credential: Credential,
    /// Where the master key is.
    pub key: SecretSource,
    /// The account's global data-plane endpoint (`connection.endpoint`),
    /// observed beside the regional ones when it answers.
    pub global_endpoint: Option<String>,
    /// Extra CA bundle (PEM) trusted for ARM, Entra ID and the data plane.
    pub ca_file: Option<String>,
    /// Locations in topology order.
    pub locations: Vec<LocationSpec>,
    /// `max_lag_ms` of the store: the loss a forced failover may risk
    /// without the operator accepting data loss.
    pub max_lag_ms: Option<u64>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

impl CosmosConfig {
    /// Validate `store`; errors name the field.
    pub fn from_store(store: &Store) -> CResult<Self> {
        if store.kind != StoreKind::Cosmosdb {
            return Err(CosmosError::config(
                "kind",
                format!("expected cosmosdb, got {}", store.kind),
            ));
        }
        let c = &store.connection;
        let az = c.azure.as_ref().ok_or_else(|| {
            CosmosError::config(
                "connection.azure",
                "a cosmosdb store needs [stores.connection.azure] with the account's ARM resource id",
            )
        })?;
        let segs: Vec<&str> = az.account.trim_matches('/').split('/').collect();
        let shape_ok = segs.len() == 8
            && segs[0].eq_ignore_ascii_case("subscriptions")
            && segs[2].eq_ignore_ascii_case("resourceGroups")
            && segs[4].eq_ignore_ascii_case("providers")
            && segs[5].eq_ignore_ascii_case("Microsoft.DocumentDB")
            && segs[6].eq_ignore_ascii_case("databaseAccounts")
            && segs.iter().all(|s| !s.is_empty());
        if !shape_ok {
            return Err(CosmosError::config(
                "connection.azure.account",
                format!(
                    "`{}` is not /subscriptions/{{id}}/resourceGroups/{{rg}}/providers/Microsoft.DocumentDB/databaseAccounts/{{name}}",
                    az.account
                ),
            ));
        }
        let arm_endpoint = non_empty(&az.arm_endpoint)
            .unwrap_or_else(|| DEFAULT_ARM.into())
            .trim_end_matches('/')
            .to_string();
        if !arm_endpoint.starts_with("https://") {
            return Err(CosmosError::config(
                "connection.azure.arm_endpoint",
                "must be an https:// URL (bearer tokens never travel in clear text)",
            ));
        }
        let authority = non_empty(&az.authority_host)
            .unwrap_or_else(|| DEFAULT_AUTHORITY.into())
            .trim_end_matches('/')
            .to_string();
        let need = |v: &Option<String>, field: &str, env: &str| -> CResult<String> {
            non_empty(v)
                .or_else(|| std::env::var(env).ok().filter(|s| !s.is_empty()))
                .ok_or_else(|| {
                    CosmosError::config(
                        format!("connection.azure.{field}"),
                        format!("required for this credential (or set {env})"),
                    )
                })
        };
        let secret_source = match (
            non_empty(&az.client_secret_env),
            non_empty(&az.client_secret_file),
        ) {
            (Some(_), Some(_)) => {
                return Err(CosmosError::config(
                    "connection.azure.client_secret_env",
                    "set client_secret_env or client_secret_file, not both",
                ))
            }
            (Some(e), None) => Some(SecretSource::Env(e)),
            (None, Some(f)) => Some(SecretSource::File(f)),
            (None, None) => None,
        };
        let kind = non_empty(&az.credential).unwrap_or_else(|| {
            if secret_source.is_some() {
                "client_secret".into()
            } else {
                "azure_cli".into()
            }
        });
        let credential = match kind.as_str() {
            "client_secret" => Credential::ClientSecret {
                authority,
                tenant: need(&az.tenant_id, "tenant_id", "AZURE_TENANT_ID")?,
                client_id: need(&az.client_id, "client_id", "AZURE_CLIENT_ID")?,
                secret: secret_source.ok_or_else(|| {
                    CosmosError::config(
                        "connection.azure.client_secret_env",
                        "client_secret needs client_secret_env or client_secret_file",
                    )
                })?,
            },
            "workload_identity" => Credential::WorkloadIdentity {
                authority,
                tenant: need(&az.tenant_id, "tenant_id", "AZURE_TENANT_ID")?,
                client_id: need(&az.client_id, "client_id", "AZURE_CLIENT_ID")?,
                token_file: std::env::var("AZURE_FEDERATED_TOKEN_FILE").map_err(|_| {
                    CosmosError::config(
                        "connection.azure.credential",
                        "workload_identity needs AZURE_FEDERATED_TOKEN_FILE in the environment",
                    )
                })?,
            },
            "managed_identity" => Credential::ManagedIdentity {
                client_id: non_empty(&az.client_id),
            },
            "azure_cli" => Credential::AzureCli,
            other => {
                return Err(CosmosError::config(
                    "connection.azure.credential",
                    format!(
                        "unknown credential `{other}` (client_secret, workload_identity, managed_identity, azure_cli)"
                    ),
                ))
            }
        };
        let key =
            match (non_empty(&c.key_env), non_empty(&az.key_file)) {
                (Some(_), Some(_)) => {
                    return Err(CosmosError::config(
                        "connection.key_env",
                        "set key_env or azure.key_file, not both",
                    ))
                }
                (Some(e), None) => SecretSource::Env(e),
                (None, Some(f)) => SecretSource::File(f),
                (None, None) => return Err(CosmosError::config(
                    "connection.key_env",
                    "the data-plane account read needs the master key: key_env or azure.key_file",
                )),
            };
        if store.members.len() < 2 {
            return Err(CosmosError::config(
                "members",
                "a Cosmos DB account to fail over needs at least two locations",
            ));
        }
        let mut locations = vec![];
        for (i, m) in store.members.iter().enumerate() {
            let location = az
                .locations
                .get(&m.region)
                .cloned()
                .unwrap_or_else(|| m.region.clone());
            if locations
                .iter()
                .any(|l: &LocationSpec| crate::arm::same_location(&l.location, &location))
            {
                return Err(CosmosError::config(
                    format!("members[{i}].region"),
                    format!("location `{location}` is listed twice"),
                ));
            }
            locations.push(LocationSpec {
                member: m.name.clone(),
                region: m.region.clone(),
                location,
            });
        }
        Ok(CosmosConfig {
            store: store.name.clone(),
            account_id: format!("/{}", segs.join("/")),
            account_name: segs[7].to_string(),
            arm_endpoint,
            credential,
            key,
            global_endpoint: non_empty(&c.endpoint),
            ca_file: non_empty(&c.tls_ca_file),
            locations,
            max_lag_ms: store.max_lag_ms,
        })
    }

    /// The location spec of a topology region.
    pub fn in_region(&self, region: &str) -> Option<&LocationSpec> {
        self.locations.iter().find(|l| l.region == region)
    }
}

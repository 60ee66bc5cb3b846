//! HTTPS endpoints of the simulator: Azure Resource Manager and the Entra ID
//! token endpoint on one port, the account's global data-plane endpoint on
//! another, and one regional data-plane endpoint per location.

use super::world::{normalize, ArmError, OpKind, OpStatus, World};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// ARM and the token endpoint.
    Arm,
    /// The account's global data-plane endpoint (routed to the write region).
    Global,
    /// The regional data-plane endpoint of location `i`.
    Region(usize),
}

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `DocumentDB Account Contributor`: read and act.
    Contributor,
    /// `Cosmos DB Account Reader Role`: read only.
    Reader,
}

/// A service principal the token endpoint knows.
#[derive(Debug, Clone)]
pub struct Client {
    /// Application (client) id.
    pub id: String,
    /// Its secret.
    pub secret: String,
    /// Its role on the account.
    pub role: Role,
}

/// State shared by every listener.
pub struct Shared {
    /// The account.
    pub world: Mutex<World>,
    /// `https://127.0.0.1:PORT` of ARM (no trailing slash).
    pub arm_base: String,
    /// Global endpoint URL (trailing slash).
    pub global_url: String,
    /// Regional endpoint URLs by location index (trailing slash).
    pub region_urls: Vec<String>,
    /// Master key (base64, as the portal shows it).
    pub key: String,
    /// Directory (tenant) id.
    pub tenant: String,
    /// Known service principals.
    pub clients: Vec<Client>,
    /// Issued tokens: role and expiry.
    pub tokens: Mutex<HashMap<String, (Role, Instant)>>,
    /// ARM requests served (for tests).
    pub arm_requests: std::sync::atomic::AtomicU64,
}

type Resp = Response<Full<Bytes>>;

fn reply(status: u16, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    r
}

fn empty(status: u16) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn header(r: &mut Resp, name: &'static str, value: &str) {
    if let Ok(v) = value.parse() {
        r.headers_mut().insert(name, v);
    }
}

fn arm_error(status: u16, code: &str, message: &str) -> Resp {
    reply(status, json!({"error": {"code": code, "message": message}}))
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// `application/x-www-form-urlencoded` and query decoding.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serve one request. `Err` closes the connection without an answer (a
/// region in outage).
pub async fn handle(
    shared: Arc<Shared>,
    at: Endpoint,
    req: Request<Incoming>,
) -> Result<Resp, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(match at {
        // The lab's test-control plane shares ARM's socket, not its
        // accounting: never counted, never throttled.
        Endpoint::Arm if parts.uri.path().starts_with(super::control::PREFIX) => {
            let key = parts
                .headers
                .get(super::control::KEY_HEADER)
                .and_then(|v| v.to_str().ok());
            let (code, v) =
                super::control::handle(&shared, &parts.method, parts.uri.path(), key, &body);
            reply(code, v)
        }
        Endpoint::Arm => {
            shared
                .arm_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            arm(&shared, &parts, &body)
        }
        Endpoint::Global | Endpoint::Region(_) => data(&shared, at, &parts, &body)?,
    })
}

fn arm(shared: &Shared, parts: &hyper::http::request::Parts, body: &[u8]) -> Resp {
    let path = parts.uri.path().to_string();
    let token_path = format!("/{}/oauth2/v2.0/token", shared.tenant);
    if path == token_path && parts.method == hyper::Method::POST {
        return token(shared, body);
    }
    if path.ends_with("/oauth2/v2.0/token") {
        return reply(
            400,
            json!({"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."}),
        );
    }
    let q = query(&parts.uri);
    let Some(api_version) = q.get("api-version").cloned() else {
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let role = match bearer(shared, parts) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut w = shared.world.lock().expect("world lock");
    if let Some((n, status)) = w.arm_faults.filter(|(n, _)| *n > 0) {
        w.arm_faults = (n > 1).then_some((n - 1, status));
        let mut r = arm_error(
            status,
            if status == 429 { "TooManyRequests" } else { "ServiceUnavailable" },
            "The request was throttled or the service is busy; retry after the interval in Retry-After.",
        );
        header(&mut r, "retry-after", &w.retry_after_secs.to_string());
        return r;
    }
    w.advance();
    let lower = path.to_ascii_lowercase();
    let account = w.account_id.to_ascii_lowercase();
    let ops_prefix = format!(
        "/subscriptions/{}/providers/microsoft.documentdb/locations/",
        w.subscription.to_ascii_lowercase()
    );
    if let Some(rest) = lower.strip_prefix(&ops_prefix) {
        // {location}/operationsStatus/{id} or {location}/operationResults/{id}
        let segs: Vec<&str> = rest.split('/').collect();
        let orig: Vec<&str> = path[ops_prefix.len()..].split('/').collect();
        if segs.len() == 3 && parts.method == hyper::Method::GET {
            let id = orig[2];
            let retry = w.retry_after_secs;
            let Some(op) = w.ops.get_mut(id) else {
                return arm_error(404, "NotFound", &format!("Operation {id} was not found."));
            };
            op.polls += 1;
            return match segs[1] {
                "operationsstatus" => {
                    let mut v = json!({
                        "id": path,
                        "name": op.id,
                        "status": op.status.as_str(),
                        "startTime": op.start_time,
                    });
                    if let Some(e) = &op.end_time {
                        v["endTime"] = json!(e);
                    }
                    if let OpStatus::Failed(code, message) = &op.status {
                        v["error"] = json!({"code": code, "message": message});
                    }
                    let running = op.status == OpStatus::InProgress;
                    let mut r = reply(200, v);
                    if running {
                        header(&mut r, "retry-after", &retry.to_string());
                    }
                    r
                }
                "operationresults" => match &op.status {
                    OpStatus::InProgress => {
                        let mut r = empty(202);
                        header(
                            &mut r,
                            "location",
                            &format!("{}{}?api-version={api_version}", shared.arm_base, path),
                        );
                        header(&mut r, "retry-after", &retry.to_string());
                        r
                    }
                    OpStatus::Succeeded => empty(204),
                    OpStatus::Failed(code, message) => arm_error(400, code, message),
                    OpStatus::Canceled => arm_error(400, "Canceled", "The operation was canceled."),
                },
                _ => arm_error(404, "NotFound", "No such operation resource."),
            };
        }
        return arm_error(404, "NotFound", "No such resource.");
    }
    if !lower.starts_with(&account) {
        return arm_error(
            404,
            "ResourceNotFound",
            &format!("The Resource '{path}' was not found."),
        );
    }
    let action = lower[account.len()..].trim_matches('/').to_string();
    let method = parts.method.clone();
    match (method.as_str(), action.as_str()) {
        ("GET", "") => reply(200, account_json(shared, &w)),
        ("POST", "failoverprioritychange" | "offlineregion" | "onlineregion") => {
            let kind = match action.as_str() {
                "failoverprioritychange" => OpKind::FailoverPriorityChange,
                "offlineregion" => OpKind::OfflineRegion,
                _ => OpKind::OnlineRegion,
            };
            if role != Role::Contributor {
                return arm_error(
                    403,
                    "AuthorizationFailed",
                    &format!(
                        "The client does not have authorization to perform action 'Microsoft.DocumentDB/databaseAccounts/{}/action' over scope '{}' or the scope is invalid.",
                        kind.action(),
                        w.account_id
                    ),
                );
            }
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return arm_error(400, "BadRequest", "The request body is not valid JSON.");
            };
            let started = match kind {
                OpKind::FailoverPriorityChange => w.failover_priority_change(&v),
                k => w.region_action(k, &v),
            };
            match started {
                Ok(id) => {
                    // ARM names the operation after the account's home location.
                    let loc = normalize(&w.locations[0].name);
                    let base = format!(
                        "{}/subscriptions/{}/providers/Microsoft.DocumentDB/locations/{loc}",
                        shared.arm_base, w.subscription
                    );
                    let mut r = empty(202);
                    header(
                        &mut r,
                        "azure-asyncoperation",
                        &format!("{base}/operationsStatus/{id}?api-version={api_version}"),
                    );
                    header(
                        &mut r,
                        "location",
                        &format!("{base}/operationResults/{id}?api-version={api_version}"),
                    );
                    header(&mut r, "retry-after", &w.retry_after_secs.to_string());
                    r
                }
                Err(ArmError {
                    status,
                    code,
                    message,
                }) => arm_error(status, &code, &message),
            }
        }
        _ => arm_error(
            405,
            "MethodNotAllowed",
            &format!("{method} {path} is not supported by the simulator."),
        ),
    }
}

fn account_json(shared: &Shared, w: &World) -> Value {
    let ep = |i: usize| shared.region_urls[i].clone();
    let online = w.online_by_priority();
    let writes: Vec<usize> = if w.multi_write {
        online.clone()
    } else {
        w.arm_write().into_iter().collect()
    };
    let c = &w.consistency;
    json!({
        "id": w.account_id,
        "name": w.name,
        "location": w.locations[0].name,
        "type": "Microsoft.DocumentDB/databaseAccounts",
        "kind": "GlobalDocumentDB",
        "tags": {},
        "properties": {
            "provisioningState": if w.busy() { "Updating" } else { "Succeeded" },
            "documentEndpoint": shared.global_url,
            "databaseAccountOfferType": "Standard",
            "consistencyPolicy": {
                "defaultConsistencyLevel": c.level,
                "maxStalenessPrefix": c.max_staleness_prefix,
                "maxIntervalInSeconds": c.max_interval_secs,
            },
            "enableAutomaticFailover": w.automatic_failover,
            "enableMultipleWriteLocations": w.multi_write,
            "writeLocations": writes.iter().map(|&i| w.location_json(i, &ep(i))).collect::<Vec<_>>(),
            "readLocations": online.iter().map(|&i| w.location_json(i, &ep(i))).collect::<Vec<_>>(),
            "locations": w.by_priority().into_iter().map(|i| w.location_json(i, &ep(i))).collect::<Vec<_>>(),
            "failoverPolicies": w.by_priority().into_iter().map(|i| json!({
                "id": format!("{}-{}", w.name, w.locations[i].short()),
                "locationName": w.locations[i].name,
                "failoverPriority": w.locations[i].priority,
            })).collect::<Vec<_>>(),
            "capabilities": [],
            "ipRules": [],
            "isVirtualNetworkFilterEnabled": false,
            "disableKeyBasedMetadataWriteAccess": false,
        }
    })
}

fn bearer(shared: &Shared, parts: &hyper::http::request::Parts) -> Result<Role, Box<Resp>> {
    let Some(auth) = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Box::new(arm_error(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )));
    };
    let Some(tok) = auth.strip_prefix("Bearer ") else {
        return Err(Box::new(arm_error(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is not a bearer token.",
        )));
    };
    let tokens = shared.tokens.lock().expect("token lock");
    match tokens.get(tok) {
        Some((role, exp)) if *exp > Instant::now() => Ok(*role),
        Some(_) => Err(Box::new(arm_error(
            401,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        ))),
        None => Err(Box::new(arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ))),
    }
}

/// The Microsoft identity platform's client-credentials grant.
fn token(shared: &Shared, body: &[u8]) -> Resp {
    let form: HashMap<String, String> = std::str::from_utf8(body)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "client_credentials" {
        return reply(
            400,
            json!({"error": "unsupported_grant_type", "error_description": "AADSTS70003: The app requested an unsupported grant type."}),
        );
    }
    if !get("scope").ends_with("/.default") {
        return reply(
            400,
            json!({"error": "invalid_scope", "error_description": "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier."}),
        );
    }
    let Some(client) = shared.clients.iter().find(|c| c.id == get("client_id")) else {
        return reply(
            400,
            json!({"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found in the directory."}),
        );
    };
    if client.secret != get("client_secret") {
        return reply(
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
        );
    }
    let tok = random_b64(32).replace(['+', '/', '='], "");
    shared.tokens.lock().expect("token lock").insert(
        tok.clone(),
        (client.role, Instant::now() + Duration::from_secs(3599)),
    );
    reply(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok}),
    )
}

/// Random bytes, base64 (keys, tokens).
pub fn random_b64(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system randomness");
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The master-key signature: HMAC-SHA256 over
/// `verb\nresourceType\nresourceLink\nx-ms-date\ndate\n` (lower-cased but
/// the link), base64 — as the REST reference's "Access control on Cosmos DB
/// resources" describes.
pub fn signature(key_b64: &str, verb: &str, rtype: &str, link: &str, date: &str) -> Option<String> {
    use hmac::{KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .ok()?;
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        verb.to_lowercase(),
        rtype.to_lowercase(),
        link,
        date.to_lowercase(),
        ""
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(text.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Resource type and link of a data-plane path, as the signature uses them:
/// `/dbs/d/colls/c/docs` → (`docs`, `dbs/d/colls/c`); `/dbs/d/colls/c/docs/x`
/// → (`docs`, `dbs/d/colls/c/docs/x`); `/` → (``, ``).
pub fn resource_of(path: &str) -> (String, String) {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.len() {
        0 => (String::new(), String::new()),
        n if n % 2 == 1 => (segs[n - 1].to_string(), segs[..n - 1].join("/")),
        n => (segs[n - 2].to_string(), segs.join("/")),
    }
}

fn data(
    shared: &Shared,
    at: Endpoint,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<Resp, std::io::Error> {
    let mut w = shared.world.lock().expect("world lock");
    w.advance();
    // The global endpoint is routed to the write (hub) region.
    let region = match at {
        Endpoint::Region(i) => i,
        _ => w.writable.first().copied().or(w.arm_write()).unwrap_or(0),
    };
    if w.locations[region].outage {
        return Err(std::io::Error::other("region outage"));
    }
    let path = percent_decode(parts.uri.path());
    let (rtype, link) = resource_of(&path);
    let h = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let date = h("x-ms-date");
    let auth = percent_decode(&h("authorization"));
    let unauthorized = |m: &str| reply(401, json!({"code": "Unauthorized", "message": m}));
    if date.is_empty() {
        return Ok(unauthorized("Required header 'x-ms-date' is missing."));
    }
    match httpdate::parse_http_date(&date) {
        Ok(t) => {
            let skew = match SystemTime::now().duration_since(t) {
                Ok(d) => d,
                Err(e) => e.duration(),
            };
            if skew > Duration::from_secs(15 * 60) {
                return Ok(reply(
                    403,
                    json!({"code": "Forbidden", "message": "The request's x-ms-date is more than 15 minutes away from the server's time."}),
                ));
            }
        }
        Err(_) => {
            return Ok(unauthorized(
                "The x-ms-date header is not an RFC 1123 date.",
            ))
        }
    }
    let fields: HashMap<&str, &str> = auth
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let expected = signature(&shared.key, parts.method.as_str(), &rtype, &link, &date);
    if fields.get("type") != Some(&"master")
        || fields.get("ver") != Some(&"1.0")
        || expected.as_deref() != fields.get("sig").copied()
    {
        return Ok(unauthorized(&format!(
            "The input authorization token can't serve the request. The wrong key is being used or the expected payload is not built as per the protocol. Server used the following payload to sign: '{}\n{}\n{}\n{}\n\n'",
            parts.method.as_str().to_lowercase(),
            rtype.to_lowercase(),
            link,
            date.to_lowercase()
        )));
    }
    let endpoints = |i: usize| shared.region_urls[i].clone();
    let mut r = match (parts.method.as_str(), rtype.as_str()) {
        ("GET", "") => reply(200, w.data_account_json(&endpoints)),
        ("POST", "docs") => {
            let Ok(doc) = serde_json::from_slice::<Value>(body) else {
                return Ok(reply(
                    400,
                    json!({"code": "BadRequest", "message": "The body is not JSON."}),
                ));
            };
            let Some(id) = doc.get("id").and_then(Value::as_str).map(String::from) else {
                return Ok(reply(
                    400,
                    json!({"code": "BadRequest", "message": "The document has no id."}),
                ));
            };
            let key = format!("{link}/docs/{id}");
            if w.locations[region].docs.contains_key(&key)
                && h("x-ms-documentdb-is-upsert").to_lowercase() != "true"
            {
                reply(
                    409,
                    json!({"code": "Conflict", "message": "Entity with the specified id already exists in the system."}),
                )
            } else {
                match w.write(region, key, doc.clone()) {
                    Ok(()) => reply(201, doc),
                    Err(super::world::WriteForbidden) => {
                        let mut r = reply(
                            403,
                            json!({"code": "Forbidden", "message": "The requested operation cannot be performed at this region"}),
                        );
                        header(&mut r, "x-ms-substatus", "3");
                        r
                    }
                }
            }
        }
        ("GET", "docs") if path.trim_matches('/').split('/').count() == 6 => {
            match w.locations[region].docs.get(&link) {
                Some(d) => reply(200, d.clone()),
                None => reply(
                    404,
                    json!({"code": "NotFound", "message": "Entity with the specified id does not exist in the system."}),
                ),
            }
        }
        _ => reply(
            400,
            json!({"code": "BadRequest", "message": format!("{} {path} is not modelled by the simulator", parts.method)}),
        ),
    };
    header(&mut r, "x-ms-request-charge", "1");
    header(
        &mut r,
        "x-ms-activity-id",
        "00000000-0000-0000-0000-000000000000",
    );
    header(&mut r, "x-ms-gatewayversion", "2.0.0");
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_type_and_link() {
        assert_eq!(resource_of("/"), (String::new(), String::new()));
        assert_eq!(
            resource_of("/dbs/d/colls/c/docs"),
            ("docs".into(), "dbs/d/colls/c".into())
        );
        assert_eq!(
            resource_of("/dbs/d/colls/c/docs/x"),
            ("docs".into(), "dbs/d/colls/c/docs/x".into())
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(
            percent_decode("type%3Dmaster%26ver%3D1.0"),
            "type=master&ver=1.0"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}

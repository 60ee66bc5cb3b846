//! `switchyard serve`: the HTTP API over the application service.
//!
//! Where to find each concept:
//! - [`api`]: routes and handlers (`/v1`, `/healthz`, `/readyz`, `/metrics`)
//!   and the OpenAPI document generated from them.
//! - [`auth`]: bearer tokens with roles, stored hashed.
//! - [`observer`]: the background refresh of every store, persisted.
//! - [`console`]: the web console served at `/` (embedded assets).
//! - [`metrics`]: the Prometheus exposition.
//! - [`commands`]: abort, rollback, drill (jobs whose events stream back),
//!   `show`'s journal and `executions close`.
//! - [`views`]: what those commands report, typed, shared with the CLI.
//! - [`problem`]: RFC 9457 errors.
//!
//! See docs/server.md.

pub mod api;
pub mod auth;
pub mod commands;
pub mod console;
pub mod metrics;
pub mod observer;
pub mod problem;
pub mod views;

use crate::service::Service;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;

/// How `serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// `--backend`.
    pub backend: String,
    /// `--node`: this server's name.
    pub node: String,
    /// `--tokens-file`.
    pub tokens_file: PathBuf,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// URL other servers and clients reach this one at (default: from the
    /// bound address).
    pub advertise: Option<String>,
    /// How often the observer refreshes every store.
    pub observe_interval: Duration,
    /// `--anonymous-read`: reads (GETs and plan previews) need no token.
    pub anonymous_read: bool,
    /// `--lease-ttl`: the lease TTL on etcd and Consul (Consul's minimum is
    /// 10 s); `None`: the backend's default (10 s).
    pub lease_ttl: Option<Duration>,
}

/// Parse `--backend`: `file`, `etcd://HOST:PORT[,HOST:PORT…]` or
/// `consul://HOST:PORT`.
pub fn check_backend(spec: &str) -> Result<crate::backend::BackendSpec, String> {
    spec.parse()
}

/// How much of the lease must remain for the leader to journal an intent:
/// a quarter of the TTL (at most 5 s), the time a step needs to be
/// journaled and issued before the lease could lapse under it.
fn lease_margin(ttl: Duration) -> Duration {
    if ttl == Duration::MAX {
        return Duration::ZERO;
    }
    (ttl / 4).min(Duration::from_secs(5))
}

/// How often a follower campaigns (and every server refreshes who leads):
/// often enough that a dead leader's successor is elected soon after its
/// lease ends, without loading the backend.
fn campaign_poll(ttl: Duration) -> Duration {
    if ttl == Duration::MAX {
        return Duration::from_secs(1);
    }
    (ttl / 10).clamp(Duration::from_millis(200), Duration::from_secs(1))
}

fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Reload the tokens file and the topology (SIGHUP). Each is validated
/// first: a bad file keeps the old one, and the log says why. The safety
/// policy and plans are read afresh by every execution (a plan comes with
/// its request), so they need no reload; the policy is checked here too, so
/// a broken one is reported now rather than at the next execution, which
/// it refuses.
fn reload(state: &api::AppState, tokens_file: &std::path::Path) {
    match auth::Tokens::load(tokens_file) {
        Ok(t) => {
            tracing::info!(tokens = t.len(), "reload: tokens file");
            *state.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
        }
        Err(e) => {
            tracing::error!(error = %e, "reload: tokens file rejected, keeping the old one");
            eprintln!("switchyard serve: reload: {e}; keeping the old tokens");
        }
    }
    match state.service.reload_topology() {
        Ok(true) => {
            tracing::info!("reload: topology");
            eprintln!("switchyard serve: reload: topology reloaded");
        }
        Ok(false) => eprintln!("switchyard serve: reload: topology unchanged"),
        Err(e) => {
            tracing::error!(error = %e, "reload: topology rejected, keeping the old one");
            eprintln!("switchyard serve: reload: {e}; keeping the old topology");
        }
    }
    if let Err(e) = crate::policy::load(state.service.topology_file()) {
        tracing::error!(error = %e, "reload: safety policy rejected");
        eprintln!("switchyard serve: reload: {e}; executions are refused until it is fixed");
    }
}

/// Run the server until the process is stopped.
pub async fn serve(service: Service, opts: ServeOptions) -> Result<(), String> {
    let spec = check_backend(&opts.backend)?;
    let tokens = auth::Tokens::load(&opts.tokens_file)?;
    if tokens.is_empty() {
        tracing::warn!(file = %opts.tokens_file.display(), "no tokens: every request will be refused");
    }
    let tls = match &opts.tls {
        Some((c, k)) => Some(tokio_rustls::TlsAcceptor::from(tls_config(c, k)?)),
        None => None,
    };
    let listener = TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", opts.listen))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let url = opts
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{}://{addr}", if tls.is_some() { "https" } else { "http" }));
    let backend = crate::backend::open_with(&spec, service.state_dir(), opts.lease_ttl)
        .await
        .map_err(|e| format!("--backend {}: {e}", opts.backend))?;
    let ttl = backend.lease_ttl();
    let election = crate::backend::Campaigner::start(
        backend,
        switchyard_coordination::Node {
            name: opts.node.clone(),
            url: url.clone(),
        },
        campaign_poll(ttl),
    );
    service.coordinate(crate::backend::Coordinated::new(
        election.clone(),
        lease_margin(ttl),
    ));
    // Know whether we lead before saying where we are.
    election.first_round().await;
    let observer = Arc::new(observer::Observer::new(service.state_dir()));
    let metrics = Arc::new(metrics::Metrics::default());
    let state = Arc::new(api::AppState {
        service: service.clone(),
        tokens: RwLock::new(Arc::new(tokens)),
        observer: observer.clone(),
        metrics: metrics.clone(),
        election: election.clone(),
        gate: tokio::sync::Mutex::new(()),
        running: Mutex::new(None),
        outcomes: Mutex::new(Default::default()),
        log: Mutex::new(Default::default()),
        anonymous_read: opts.anonymous_read,
    });
    tokio::spawn(observer.run(service.clone(), metrics.clone(), opts.observe_interval));
    {
        let mut rx = service.subscribe();
        let metrics = metrics.clone();
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(p) => {
                        metrics.event(&p);
                        state.log.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
    }
    {
        let state = state.clone();
        let tokens_file = opts.tokens_file.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| format!("SIGHUP handler: {e}"))?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                reload(&state, &tokens_file);
            }
        });
    }
    // One line for whoever started us (tests, supervisors): where we are.
    // Each time this server becomes leader, it resumes the execution the
    // backend records as running (a dead or cut-off leader's).
    {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let leadership = state.election.until_leading().await;
                tracing::info!(token = leadership.token(), "leading");
                state.take_over().await;
                leadership.lost().await;
                tracing::warn!(reason = ?leadership.lost_reason(), "leadership lost");
            }
        });
    }
    println!(
        "{}",
        serde_json::json!({"listening": addr.to_string(), "url": url, "node": opts.node,
                           "leader": election.leads(),
                           "backend": opts.backend})
    );
    let app = api::router(state);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let r = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        builder
                            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(s), svc)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                        .await
                }
            };
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection");
            }
        });
    }
}

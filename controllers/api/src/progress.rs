//! Progress of a long-running operation, journaled while it still runs.
//!
//! Some stores hand back a handle long before an operation finishes: an
//! Azure Resource Manager long-running operation answers `202 Accepted` with
//! an `Azure-AsyncOperation` URL and takes minutes. If the coordinator
//! crashes in between, the resumed coordinator must poll *that* operation,
//! not start a second one. So a controller calls [`record`] with the handle
//! as soon as it has one; the driver journals it durably before `record`
//! returns, and when the step is issued again (a retry, or a resume in a new
//! process) [`token`] hands the same handle back.
//!
//! Outside a driver (tests, `state`, the conformance suite driving a
//! controller directly) there is no scope: [`record`] keeps the token for
//! the rest of the call only and [`token`] starts empty.

use async_trait::async_trait;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Where recorded tokens go (the driver's journal).
#[async_trait]
pub trait ProgressSink: Send + Sync {
    /// Make `token` durable; return once it is.
    async fn record(&self, token: &str) -> Result<(), String>;
}

/// What one issued operation sees: the latest token and where new ones go.
#[derive(Clone)]
pub struct Scope {
    latest: Arc<Mutex<Option<String>>>,
    sink: Option<Arc<dyn ProgressSink>>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("latest", &self.latest.lock().map(|l| l.clone()).ok())
            .finish_non_exhaustive()
    }
}

impl Scope {
    /// A scope starting from `resumed` (the last token journaled for this
    /// step, if any) that makes new tokens durable through `sink`.
    pub fn new(resumed: Option<String>, sink: Option<Arc<dyn ProgressSink>>) -> Self {
        Scope {
            latest: Arc::new(Mutex::new(resumed)),
            sink,
        }
    }

    /// Run `fut` (one `Controller::execute` call) inside this scope.
    pub async fn run<F: Future>(self, fut: F) -> F::Output {
        SCOPE.scope(self, fut).await
    }
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// The latest token recorded for the operation being executed, by this call,
/// an earlier attempt or an earlier process.
pub fn token() -> Option<String> {
    SCOPE
        .try_with(|s| s.latest.lock().ok().and_then(|l| l.clone()))
        .ok()
        .flatten()
}

/// Record `token` for the operation being executed; durable (journaled) when
/// this returns inside a driver. An error means the journal could not be
/// written: the operation should stop and report it.
pub async fn record(token: impl Into<String>) -> Result<(), String> {
    let token = token.into();
    let Ok((latest, sink)) = SCOPE.try_with(|s| (s.latest.clone(), s.sink.clone())) else {
        return Ok(());
    };
    if let Some(sink) = sink {
        sink.record(&token).await?;
    }
    if let Ok(mut l) = latest.lock() {
        *l = Some(token);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<String>>);
    #[async_trait]
    impl ProgressSink for Collect {
        async fn record(&self, token: &str) -> Result<(), String> {
            self.0.lock().unwrap().push(token.to_string());
            Ok(())
        }
    }

    #[tokio::test]
    async fn tokens_reach_the_sink_and_later_attempts() {
        let sink = Arc::new(Collect(Mutex::new(vec![])));
        let scope = Scope::new(Some("old".into()), Some(sink.clone()));
        let seen = scope
            .clone()
            .run(async {
                let before = token();
                record("new").await.unwrap();
                (before, token())
            })
            .await;
        assert_eq!(seen, (Some("old".into()), Some("new".into())));
        // A retry in the same scope sees the newest token.
        assert_eq!(scope.run(async { token() }).await, Some("new".into()));
        assert_eq!(*sink.0.lock().unwrap(), vec!["new".to_string()]);
        // Outside any scope nothing is remembered and nothing fails.
        record("x").await.unwrap();
        assert_eq!(token(), None);
    }
}

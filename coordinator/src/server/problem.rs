//! Errors as RFC 9457 `application/problem+json`.

use crate::service::{ErrorKind, ServiceError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` with a title, or one
    /// of the `urn:switchyard:problem:*` below).
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened here and what to do.
    pub detail: String,
    /// The execution running now, when that is why a request was refused (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_execution: Option<String>,
}

impl Problem {
    /// A problem with `status`, a `urn:switchyard:problem:<kind>` type and a detail.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            type_: format!("urn:switchyard:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            running_execution: None,
        }
    }

    /// 401: no or unknown bearer token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403: the token's role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Self {
        let (status, kind) = match e.kind {
            ErrorKind::Usage => (StatusCode::BAD_REQUEST, "invalid"),
            ErrorKind::Locked => (StatusCode::CONFLICT, "busy"),
            ErrorKind::Refused => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
            ErrorKind::Failed => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
            // Journaled and waiting for a second person: accepted, not run.
            ErrorKind::PendingApproval => (StatusCode::ACCEPTED, "pending-approval"),
        };
        Problem::new(status, kind, e.message)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchyard\""),
            );
        }
        r
    }
}

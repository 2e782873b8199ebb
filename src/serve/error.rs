//! The native API's one error shape, and extractors whose rejections use it.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::engine::EngineError;
use crate::llm::LlmError;
use crate::proto::{ErrorBody, ErrorInfo, TaskState};

/// An error answered as `{"error": {"code", "message"}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub state: Option<TaskState>,
    /// Seconds for `Retry-After` on a 429 or 503 (1 when not set).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            state: None,
            retry_after_secs: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A 429 that says when to come back.
    pub fn too_many(
        code: &'static str,
        message: impl Into<String>,
        retry_after_secs: u64,
    ) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, wrong or expired credentials: send an API key or session token as \
             `Authorization: Bearer <key>` or `?api_key=<key>`",
        )
    }

    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            code: self.code.to_string(),
            message: self.message.clone(),
            state: self.state,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.info() };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(self.retry_after_secs.unwrap_or(1)),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        let message = error.to_string();
        match error {
            EngineError::NotFound(_) => ApiError::not_found(message),
            EngineError::WrongState { state, .. } => ApiError {
                state: Some(state),
                ..ApiError::new(StatusCode::CONFLICT, "conflict", message)
            },
            EngineError::StdinClosed(_) => {
                ApiError::new(StatusCode::CONFLICT, "stdin_closed", message)
            }
            EngineError::StdinFull(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
            }
            EngineError::Invalid(_) => ApiError::invalid(message),
            EngineError::IdempotencyMismatch => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_mismatch",
                message,
            ),
            EngineError::QueueFull(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", message)
            }
            EngineError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            EngineError::Unsupported { .. } | EngineError::NoTurnRunning(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            EngineError::TurnRunning { .. } => {
                ApiError::new(StatusCode::CONFLICT, "turn_running", message)
            }
            EngineError::ConversationNotFound(_)
            | EngineError::ApprovalNotFound(_)
            | EngineError::CheckpointNotFound { .. }
            | EngineError::SessionCheckpointNotFound(_)
            | EngineError::ExecutionNotFound { .. } => ApiError::not_found(message),
            EngineError::CheckpointFailed(_) => {
                ApiError::new(StatusCode::CONFLICT, "checkpoint_failed", message)
            }
            EngineError::ApprovalResolved { .. } => {
                ApiError::new(StatusCode::CONFLICT, "approval_resolved", message)
            }
            EngineError::SessionsFull(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "sessions_full", message)
            }
            EngineError::TooManySessions { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_sessions", message)
            }
            EngineError::NoInputWanted(_) => {
                ApiError::new(StatusCode::CONFLICT, "no_input_wanted", message)
            }
            EngineError::Llm(e) => llm_error(e),
            EngineError::Store(e) => {
                tracing::error!(error = %e, "store error while answering a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
            EngineError::Encode { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

/// A provider's failure while a chat was being set up: the caller's mistake (an unknown
/// provider or model) is 422, the provider's own trouble 502 or 504.
fn llm_error(error: LlmError) -> ApiError {
    let message = error.to_string();
    match error {
        LlmError::UnknownProvider(_) | LlmError::NoModel(_) | LlmError::ModelNotFound { .. } => {
            ApiError::invalid(message)
        }
        LlmError::Timeout { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "provider_timeout", message)
        }
        LlmError::Unreachable { .. } | LlmError::Provider { .. } | LlmError::Protocol { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", message)
        }
    }
}

/// A JSON body (`Content-Type: application/json`, else 415), rejected with 400 when it is not
/// JSON, 422 when it is JSON of the wrong shape, and 413 when it is over the body limit.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A web page cannot send this type to another site without a CORS preflight, which
        // victor does not grant: together with the Origin check, no page can post a task.
        let content_type = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json` (curl: --json)",
            ));
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            "the request body is larger than the server accepts",
                        )
                    } else {
                        ApiError::bad_request(rejection.body_text())
                    }
                })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON object (a body or a message) with the API's error statuses: 400 malformed,
/// 422 wrong shape. As in JSON (and JSON Schema), `3.0` is the integer 3.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    // serde also reads a struct from an array of its fields in order; nobody means that.
    if value.is_array() {
        return Err(ApiError::invalid("expected a JSON object, not an array"));
    }
    integral_numbers_as_integers(&mut value);
    serde_json::from_value(value).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Writes every whole number in `value` that JSON spelled with a fraction or an exponent
/// (`3.0`, `3e0`) as an integer, which integer fields take; number fields take both.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
            {
                let integer = if float < 0.0 {
                    (float >= i64::MIN as f64).then(|| serde_json::Number::from(float as i64))
                } else {
                    (float < u64::MAX as f64).then(|| serde_json::Number::from(float as u64))
                };
                if let Some(integer) = integer {
                    *number = integer;
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(integral_numbers_as_integers)
        }
        _ => {}
    }
}

/// Query parameters, rejected with a JSON 400 that names the bad parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }
}

//! The API's errors: each one a status code and a JSON body `{"error": "..."}` whose
//! message names the part of the request at fault.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is out of range (400).
    #[error("{0}")]
    BadRequest(String),
    /// A request this server does not take from where it came (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing of that name (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists, not with this method (405).
    #[error("{0}")]
    WrongMethod(String),
    /// The body is larger than the server takes (413).
    #[error("{what}: larger than the {limit} bytes this server takes")]
    TooLarge {
        /// What was sent (`the image`, `the mask`).
        what: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not an image of a format the server reads (415).
    #[error("{0}")]
    Unsupported(String),
    /// The body is an image the models cannot take (422).
    #[error("{0}")]
    Unprocessable(String),
    /// Too many jobs waiting (429).
    #[error("{0}")]
    Busy(String),
    /// The request clashes with the job's state (409).
    #[error("{0}")]
    Conflict(String),
    /// A model or the server failed (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status code it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::WrongMethod(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// The answer of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

//! One error type for every request path: what went wrong, said once, and how each protocol
//! reports it (an HTTP status with `{"error": "..."}` for REST, a status code for gRPC).

/// Why a request failed. The message names the model, the input or the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// The request is malformed or does not fit the model (a wrong name, shape or dtype).
    #[error("{0}")]
    InvalidArgument(String),
    /// No such model, version, label or signature.
    #[error("{0}")]
    NotFound(String),
    /// The model exists but no version of it is ready yet, or the server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The model's queue is full.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request, or a tensor it describes, is larger than the server's limit.
    #[error("{0}")]
    TooLarge(String),
    /// The request took longer than the server's timeout.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The protocol is valid but this server does not do what it asks.
    #[error("{0}")]
    Unimplemented(String),
    /// The model failed to run (its error, as the runtime says it).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

/// `ServeError::InvalidArgument(format!(...))`.
macro_rules! invalid {
    ($($t:tt)*) => { $crate::error::ServeError::InvalidArgument(format!($($t)*)) };
}
pub(crate) use invalid;

impl ServeError {
    /// The HTTP status REST answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ServeError::InvalidArgument(_) => 400,
            ServeError::NotFound(_) => 404,
            ServeError::ResourceExhausted(_) => 429,
            ServeError::TooLarge(_) => 413,
            ServeError::Unavailable(_) => 503,
            ServeError::DeadlineExceeded(_) => 504,
            ServeError::Unimplemented(_) => 501,
            ServeError::Internal(_) => 500,
        }
    }

    /// The gRPC status gRPC answers with.
    pub fn grpc_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            ServeError::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            ServeError::NotFound(_) => tonic::Status::not_found(message),
            ServeError::ResourceExhausted(_) | ServeError::TooLarge(_) => {
                tonic::Status::resource_exhausted(message)
            }
            ServeError::Unavailable(_) => tonic::Status::unavailable(message),
            ServeError::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(message),
            ServeError::Unimplemented(_) => tonic::Status::unimplemented(message),
            ServeError::Internal(_) => tonic::Status::internal(message),
        }
    }

    /// The label metrics count this outcome under.
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::InvalidArgument(_) => "invalid_argument",
            ServeError::NotFound(_) => "not_found",
            ServeError::ResourceExhausted(_) => "resource_exhausted",
            ServeError::TooLarge(_) => "too_large",
            ServeError::Unavailable(_) => "unavailable",
            ServeError::DeadlineExceeded(_) => "deadline_exceeded",
            ServeError::Unimplemented(_) => "unimplemented",
            ServeError::Internal(_) => "internal",
        }
    }
}

impl From<ServeError> for tonic::Status {
    fn from(e: ServeError) -> tonic::Status {
        e.grpc_status()
    }
}

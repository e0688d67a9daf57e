//! gRPC transport: translation between saring.v1 messages and the application core. No logic lives here.

mod escalations;
mod models;
mod privacy;
mod screening;
pub mod validate;

pub use escalations::EscalationsService;
pub use models::ModelsService;
pub use privacy::PrivacyService;
pub use screening::ScreeningService;

use prost_types::Timestamp;

/// The server's clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A protobuf timestamp of Unix milliseconds.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

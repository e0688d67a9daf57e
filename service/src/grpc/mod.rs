//! gRPC transport: translation between saring.v1 messages and the screening core. No logic lives here.

mod screening;
pub mod validate;

pub use screening::ScreeningService;

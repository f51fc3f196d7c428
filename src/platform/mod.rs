//! Third-party platforms (SPEC §8): the push crypto and messages; component and
//! authorizer tokens, discovery.

pub mod crypto;
pub mod push;
pub mod tokens;

pub use tokens::{PlatformError, Platforms};

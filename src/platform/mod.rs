//! Third-party platforms (SPEC §8): the push crypto, the pushes themselves, component
//! and authorizer tokens, discovery.

pub mod crypto;

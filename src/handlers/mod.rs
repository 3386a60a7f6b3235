//! Thin HTTP handlers, one module per concern, each with its own `router()`. They parse the
//! request, call `linkedin` and `session`, and return `Result`; they never sign, never talk
//! to LinkedIn directly and never build an error response by hand.

pub mod admin;
pub mod assets;
pub mod auth_check;
pub mod exchange;
pub mod health;
pub mod login;
pub mod member;
pub mod oidc;

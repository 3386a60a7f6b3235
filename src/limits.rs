//! The limits on a request's body, shared by the router that enforces them ([`crate::app`])
//! and the errors that name them ([`crate::error`]); and the store's timeout, shared by the
//! session stores and the shared rate-limit budget. A leaf: it imports nothing of the crate.

use std::time::Duration;

/// The largest request body accepted (the routes take none, or a small one).
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024;
/// The most of an oversized body that is read (and thrown away) before its 413, so that a
/// client still uploading sees the answer instead of a reset.
#[cfg(feature = "server")]
pub(crate) const MAX_DRAINED_BYTES: u64 = 1024 * 1024;
/// How long a request body may take to arrive.
#[cfg(feature = "server")]
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// The longest a store operation may take before the request is answered 503.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(1);

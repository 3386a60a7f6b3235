//! The LinkedIn side as the service sees it: the JSAPI cookie ([`cookie`], pure) and the
//! OAuth 1.0a calls ([`client`], I/O).

pub mod client;
pub mod cookie;

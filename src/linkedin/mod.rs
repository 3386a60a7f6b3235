//! The LinkedIn side as the service sees it: the JSAPI cookie ([`cookie`], pure), the
//! OAuth 1.0a calls ([`client`], I/O, and the one upstream HTTPS client, whose resolver
//! keeps its answers ([`dns`])), and the OpenID Connect relying party ([`oidc`], I/O over
//! the same client), and the check of a provider before going live ([`provider_check`]).

pub mod client;
pub mod cookie;
pub mod dns;
pub mod oidc;
pub mod provider_check;

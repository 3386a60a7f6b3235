//! The LinkedIn side as the service sees it: the JSAPI cookie ([`cookie`], pure), the one
//! upstream HTTPS client ([`transport`], I/O, whose resolver keeps its answers: [`dns`]), the
//! OAuth 1.0a calls over it ([`client`]), the OpenID Connect relying party over it
//! ([`oidc`]), the member's own calls to the API, signed with their credentials ([`api`]),
//! and the check of a provider before going live ([`provider_check`]).

pub(crate) mod api;
pub(crate) mod client;
pub(crate) mod cookie;
pub(crate) mod dns;
pub(crate) mod oidc;
pub(crate) mod provider_check;
pub(crate) mod transport;

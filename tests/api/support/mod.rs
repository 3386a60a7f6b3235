//! Test doubles shared by several test modules: the fake OpenID Connect provider (in its
//! documented and its observed-LinkedIn profile) and the rig that signs in against it.

pub mod oidc_provider;

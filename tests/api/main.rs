//! Integration tests: one binary, a real HTTPS server per test on a random port.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

mod account;
mod at_rest;
mod browser;
mod config_docs;
mod connections;
mod credentials;
mod credentials_sandbox;
mod discovery;
mod errors;
mod faults;
mod fleet;
mod flow;
mod forward_auth;
mod hardening;
mod oidc;
mod oidc_check_provider;
mod oidc_observed;
mod oidc_refusals;
mod openapi;
mod operations;
mod package;
mod process;
mod production;
mod proxies;
mod proxy;
mod refresh;
mod revocation;
mod sandbox;
mod sandbox_credentials;
mod sandbox_oidc;
mod sandbox_standalone;
mod scanners;
mod secrets;
mod stores;
mod traces;

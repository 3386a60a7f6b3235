//! Integration tests: one binary, a real HTTPS server per test on a random port.

mod helpers;

mod flow;
mod sandbox;

//! Test doubles and runners shared by several test modules: the fake OpenID Connect provider
//! (in its documented and its observed-LinkedIn profile), the rig that signs in against it,
//! and the service's binary as a person runs it.

use std::path::Path;
use std::process::Command;

pub mod oidc_provider;

/// The service's binary, with no inherited environment and `dir` as its working directory
/// (so that no `.env` is read but one the test writes there).
pub fn binary(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linkedin-token-exchange"));
    command.env_clear().current_dir(dir);
    command
}

//! Files that hold secrets (the SQLite sessions, the generated key): created readable by
//! their owner only, in a folder of the owner's when this service creates it.

use std::io::Write;
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

/// Creates `path`'s folder, mode 0700, when it does not exist yet.
pub(crate) fn create_parent(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    Ok(())
}

/// Options that create a file with mode 0600.
pub(crate) fn options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Makes an existing file readable by its owner only, when others could read it.
pub(crate) fn narrow_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            tracing::info!(path = %path.display(), "made the file readable by its owner only");
        }
    }
    Ok(())
}

/// How a new key file takes its place.
#[derive(Clone, Copy)]
pub(crate) enum Place {
    /// Only where no file is: `AlreadyExists` when another process was first.
    IfAbsent,
    /// Over the file that is there.
    Replace,
}

/// Writes `contents` (a key) into a file of mode 0600 (its folder 0700 when created here). The
/// contents are written and synced under a temporary name first, then put in place whole, so that
/// a crash never leaves an empty or partial key file: hard-linked for [`Place::IfAbsent`]
/// (which, unlike a rename, never replaces the key of an instance that was first), renamed
/// for [`Place::Replace`].
pub(crate) fn write_private(path: &Path, contents: &[u8], place: Place) -> std::io::Result<()> {
    create_parent(path)?;
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| std::io::Error::other("the system gave no randomness"))?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", hex(&suffix)));
    let temporary = path.with_file_name(name);
    let written = (|| {
        let mut file = options().write(true).create_new(true).open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        match place {
            Place::IfAbsent => std::fs::hard_link(&temporary, path),
            Place::Replace => std::fs::rename(&temporary, path),
        }
    })();
    let _ = std::fs::remove_file(&temporary);
    written?;
    // The new name is durable once the folder is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

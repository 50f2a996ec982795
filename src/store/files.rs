//! File-system steps the store's rooms share: the name check that keeps every file inside
//! the data directory, an append that never leaves half a record, fsync of a directory,
//! the write probe at open and the removal of a rewrite a crash left unfinished.
//!
//! What it does not do: know what the files hold (the records are `record`'s, their
//! meaning each room's own).

use super::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

const PROBE_FILE: &str = ".write-probe";

/// An I/O error on `path`, with the path in its message.
pub fn at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::File {
        path: path.to_path_buf(),
        error,
    }
}

/// Refuses names that are not a single safe path component. Names are
/// validated by the protocol layer; this only guards the file system.
pub(super) fn check_name(name: &str) -> io::Result<()> {
    let bad =
        name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0', '+']);
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid name for storage: {name:?}"),
        ));
    }
    Ok(())
}

/// Makes a directory's entries (created, renamed, removed files) durable.
#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for fsync here; entries are durable enough.
#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Appends one encoded record. On any failure the file is truncated back to
/// its previous length, so a half-written line never precedes the next one.
pub(super) fn append_line(path: &Path, line: &str, durable: bool) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let start = file.metadata()?.len();
    if let Err(e) = write_line(&mut file, path, line, durable, start == 0) {
        if let Err(e2) = file.set_len(start) {
            log::warn!(
                "{}: could not roll back failed append at byte offset {start}: {e2}",
                path.display()
            );
        }
        return Err(e);
    }
    Ok(())
}

fn write_line(
    file: &mut File,
    path: &Path,
    line: &str,
    durable: bool,
    new_file: bool,
) -> io::Result<()> {
    file.write_all(line.as_bytes())?;
    if durable {
        file.sync_data()?;
        if new_file {
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
        }
    }
    Ok(())
}

/// Removes a temporary file left by an interrupted rewrite (its original is intact).
pub(super) fn remove_leftover(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => {
            log::warn!("{}: removed an unfinished rewrite", path.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at(path)(e)),
    }
}

/// Proves `dir` is writable by creating, writing, fsyncing and removing a file.
pub(super) fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let mut file = File::create(&path)?;
    file.write_all(b"probe\n")?;
    file.sync_all()?;
    drop(file);
    fs::remove_file(&path)
}

//! Downloads that are verified before use: a file is only ever used after its sha256
//! matched the pinned value, and a partial or corrupted file never replaces a good one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{clean_stale_partials, sha256_file};

/// Why a download could not be had.
#[derive(Debug)]
pub enum FetchError {
    /// The URL could not be fetched at all (network, HTTP status).
    Unreachable(String),
    /// It was fetched but is not what was pinned.
    Mismatch {
        url: String,
        expected: String,
        got: String,
    },
    Io(String),
}

impl std::error::Error for FetchError {}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(why) => write!(f, "{why}"),
            FetchError::Mismatch { url, expected, got } => {
                write!(f, "{url}: sha256 {got} does not match the pinned {expected}; the file was not used")
            }
            FetchError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// GETs a URL into memory (small index files).
pub fn get(url: &str) -> Result<Vec<u8>, FetchError> {
    let mut resp = ureq::get(url).call().map_err(|e| FetchError::Unreachable(format!("cannot download {url}: {e}")))?;
    resp.body_mut()
        .with_config()
        .limit(512 << 20)
        .read_to_vec()
        .map_err(|e| FetchError::Unreachable(format!("cannot download {url}: {e}")))
}

/// Checks that a URL answers (HEAD), without downloading it.
pub fn head(url: &str) -> Result<(), FetchError> {
    ureq::head(url).call().map(|_| ()).map_err(|e| FetchError::Unreachable(format!("cannot download {url}: {e}")))
}

/// The cached file for `sha256`, downloading it from `url` first if it is missing or does
/// not match (`notify` hears why a download happens). Every call verifies the file.
pub fn fetch_verified(
    url: &str,
    sha256: &str,
    dir: &Path,
    name: &str,
    notify: &dyn Fn(&str),
) -> Result<PathBuf, FetchError> {
    std::fs::create_dir_all(dir).map_err(|e| FetchError::Io(format!("{}: {e}", dir.display())))?;
    let path = dir.join(name);
    if path.exists() {
        match sha256_file(&path) {
            Ok(got) if got == sha256 => return Ok(path),
            // Corrupted in the cache: fetch it again.
            _ => {
                notify("the cached copy does not match its sha256; downloading it again");
                let _ = std::fs::remove_file(&path);
            }
        }
    } else {
        notify("downloading");
    }
    clean_stale_partials(dir);
    let partial = super::partial_path(&path);
    let result = download_to(url, &partial).and_then(|()| {
        let got = sha256_file(&partial).map_err(|e| FetchError::Io(e.to_string()))?;
        if got != sha256 {
            return Err(FetchError::Mismatch { url: url.to_string(), expected: sha256.to_string(), got });
        }
        std::fs::rename(&partial, &path).map_err(|e| FetchError::Io(e.to_string()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.map(|()| path)
}

fn download_to(url: &str, path: &Path) -> Result<(), FetchError> {
    let resp = ureq::get(url).call().map_err(|e| FetchError::Unreachable(format!("cannot download {url}: {e}")))?;
    let mut reader = resp.into_body().into_reader();
    let mut file = std::fs::File::create(path).map_err(|e| FetchError::Io(format!("{}: {e}", path.display())))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n =
            reader.read(&mut buf).map_err(|e| FetchError::Unreachable(format!("download of {url} broke off: {e}")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| FetchError::Io(e.to_string()))?;
    }
    file.sync_all().map_err(|e| FetchError::Io(e.to_string()))
}

//! Downloads that are verified before use and cached: a file is only ever used after its
//! sha256 matched the pinned value, and a partial or corrupted file never replaces a good
//! one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// `$ADDRSEL_CACHE`, else `$XDG_CACHE_HOME/addrsel`, else `~/.cache/addrsel`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ADDRSEL_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("addrsel");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/addrsel")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

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

/// Moves a finished `partial` directory to `dir` in one step, so `dir` only ever exists
/// complete. When another process got there first, its copy is kept and this one removed.
pub fn publish_dir(partial: &Path, dir: &Path) -> Result<(), String> {
    match std::fs::rename(partial, dir) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_dir_all(partial);
            if dir.exists() { Ok(()) } else { Err(format!("{}: {e}", dir.display())) }
        }
    }
}

/// Removes `*.partial.<pid>` files and directories of processes that no longer exist
/// (interrupted runs).
pub fn clean_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((_, pid)) = name.rsplit_once(".partial.") {
            let alive = pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = std::fs::remove_file(e.path()).or_else(|_| std::fs::remove_dir_all(e.path()));
            }
        }
    }
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
    let partial = dir.join(format!("{name}.partial.{}", std::process::id()));
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

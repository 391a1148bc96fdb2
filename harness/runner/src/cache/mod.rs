//! The cache (`~/.cache/addrsel`): verified downloads (`download`), and what the harness
//! builds from them. Everything enters it through [`publish`]: built beside its final name,
//! moved there in one rename (so concurrent runs never see half a file), and, for files,
//! with its sha256 recorded so [`intact`] can tell a damaged copy before it is used.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

mod download;
pub use download::{FetchError, fetch_verified, get, head};

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

/// Removes `*.partial.<pid>` files and directories of processes that no longer exist
/// (interrupted runs).
pub fn clean_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((_, owner)) = name.rsplit_once(".partial.") {
            let pid = owner.split('.').next().unwrap_or_default();
            let alive = pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = std::fs::remove_file(e.path()).or_else(|_| std::fs::remove_dir_all(e.path()));
            }
        }
    }
}

/// Where `dest` is built before it is published: a sibling only this call uses. Two
/// targets prepared at once by one process may build the same entry (a package both build
/// roots unpack): a name per process only let the second call delete the first's half-built
/// tree, which the first then published incomplete (seen on a first run: bookworm's and
/// forky's amd64 and arm64 roots share their kbuild package).
pub fn partial_path(dest: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!("{name}.partial.{}.{n}", std::process::id()))
}

fn remove_any(path: &Path) {
    let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir_all(path));
}

/// The file recording a published file's sha256.
fn hash_record(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!("{name}.sha256"))
}

/// Makes `dest` (a file or a directory) with `make`, which fills the path it is given, then
/// moves it into place in one rename. When another process published it first, its copy is
/// kept. On any error, nothing is left behind. A published file's sha256 is recorded.
pub fn publish(dest: &Path, make: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = dest.parent().context("a cache entry has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clean_stale_partials(dir);
    let partial = partial_path(dest);
    remove_any(&partial);
    let made = make(&partial).and_then(|()| {
        let hash = if partial.is_file() {
            Some(sha256_file(&partial).with_context(|| format!("cannot read {}", partial.display()))?)
        } else {
            None
        };
        match std::fs::rename(&partial, dest) {
            Ok(()) => {}
            Err(_) if dest.exists() => {
                remove_any(&partial);
                return Ok(());
            }
            Err(e) => return Err(anyhow::anyhow!("cannot move {} into place: {e}", dest.display())),
        }
        if let Some(hash) = hash {
            let record = hash_record(dest);
            let tmp = partial_path(&record);
            std::fs::write(&tmp, format!("{hash}\n"))
                .and_then(|()| std::fs::rename(&tmp, &record))
                .with_context(|| format!("cannot record the sha256 of {}", dest.display()))?;
        }
        Ok(())
    });
    if made.is_err() {
        remove_any(&partial);
    }
    made
}

/// Whether a published file is there and still has the sha256 recorded when it was
/// published. A damaged one (or one without a record) is removed, so the caller builds it
/// again; `notify` hears why.
pub fn intact(dest: &Path, notify: &dyn Fn(&str)) -> bool {
    if !dest.exists() {
        return false;
    }
    let recorded = std::fs::read_to_string(hash_record(dest)).ok().map(|s| s.trim().to_string());
    let actual = sha256_file(dest).ok();
    if recorded.is_some() && recorded == actual {
        return true;
    }
    notify(&format!(
        "{} {}; building it again",
        dest.display(),
        if recorded.is_none() {
            "has no recorded sha256"
        } else {
            "does not match the sha256 recorded when it was built"
        }
    ));
    remove_any(dest);
    let _ = std::fs::remove_file(hash_record(dest));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("addrsel-test-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn published_files_are_checked_and_damage_is_found() {
        let d = scratch("publish");
        let f = d.join("kernel.vmlinux");
        publish(&f, |p| Ok(std::fs::write(p, b"good")?)).unwrap();
        assert!(intact(&f, &|_| {}));
        std::fs::write(&f, b"bad!").unwrap();
        let said = std::cell::RefCell::new(String::new());
        assert!(!intact(&f, &|m| *said.borrow_mut() = m.to_string()));
        assert!(said.borrow().contains("does not match the sha256"), "{}", said.borrow());
        assert!(!f.exists(), "a damaged file is removed");
        // A failed build leaves nothing, not even its partial file.
        let e = publish(&f, |p| {
            std::fs::write(p, b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(e.is_err());
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            0,
            "{:?}",
            std::fs::read_dir(&d).unwrap().collect::<Vec<_>>()
        );
        // Directories are published whole.
        let dir = d.join("tree");
        publish(&dir, |p| {
            std::fs::create_dir(p)?;
            Ok(std::fs::write(p.join("x"), b"1")?)
        })
        .unwrap();
        assert!(dir.join("x").exists());
        // Another process published it first: its copy stays, this one's partial goes.
        publish(&dir, |p| {
            std::fs::create_dir(p)?;
            Ok(std::fs::write(p.join("y"), b"2")?)
        })
        .unwrap();
        assert!(dir.join("x").exists() && !dir.join("y").exists());
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("tree")], "no partial is left behind");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Two threads of one process building the same entry at once (two targets sharing a
    /// package): each builds its own partial tree, and what is published is complete.
    #[test]
    fn concurrent_builds_of_one_entry_do_not_cut_each_other() {
        use std::sync::mpsc::channel;
        let d = scratch("concurrent");
        let dest = d.join("tree");
        let (to_b, from_a) = channel::<()>();
        let (to_a, from_b) = channel::<()>();
        let dest_b = dest.clone();
        let b = std::thread::spawn(move || {
            from_a.recv().unwrap();
            publish(&dest_b, |p| {
                to_a.send(()).unwrap();
                std::fs::create_dir_all(p)?;
                std::fs::write(p.join("first"), b"b")?;
                std::fs::write(p.join("second"), b"b")?;
                Ok(())
            })
        });
        publish(&dest, |p| {
            std::fs::create_dir_all(p)?;
            std::fs::write(p.join("first"), b"a")?;
            to_b.send(()).unwrap();
            // B has started its own build before A writes the rest.
            from_b.recv().unwrap();
            std::fs::write(p.join("second"), b"a")?;
            Ok(())
        })
        .unwrap();
        b.join().unwrap().unwrap();
        assert!(dest.join("first").exists() && dest.join("second").exists());
    }
}

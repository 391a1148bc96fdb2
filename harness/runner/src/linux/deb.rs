//! Unpacking `.deb` files (an `ar` archive holding `data.tar.{xz,gz}`) into the cache, once.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;

/// The members of an `ar` archive: (name, bytes).
fn ar_members(data: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    if !data.starts_with(b"!<arch>\n") {
        return Err("not an ar archive".into());
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 60 <= data.len() {
        let header = &data[pos..pos + 60];
        let name = String::from_utf8_lossy(&header[..16]).trim_end().trim_end_matches('/').to_string();
        let size: usize = String::from_utf8_lossy(&header[48..58]).trim().parse().map_err(|_| "bad ar member size")?;
        let start = pos + 60;
        let end = start.checked_add(size).filter(|&e| e <= data.len()).ok_or("truncated ar archive")?;
        out.push((name, &data[start..end]));
        pos = end + (size & 1);
    }
    Ok(out)
}

/// The fields of a package's `control` file (Package, Version, Architecture, Depends...).
pub fn control(deb: &Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let data = std::fs::read(deb).with_context(|| format!("cannot read {}", deb.display()))?;
    let members = ar_members(&data).map_err(|e| anyhow::anyhow!("{}: {e}", deb.display()))?;
    let (name, bytes) = members
        .iter()
        .find(|(n, _)| n.starts_with("control.tar"))
        .with_context(|| format!("{}: no control.tar member", deb.display()))?;
    let reader: Box<dyn Read> = match name.as_str() {
        "control.tar.xz" => Box::new(xz2::read::XzDecoder::new(*bytes)),
        "control.tar.gz" => Box::new(flate2::read::GzDecoder::new(*bytes)),
        "control.tar" => Box::new(*bytes),
        other => anyhow::bail!("{}: unsupported member {other}", deb.display()),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().with_context(|| format!("{}: {name} is not a tar archive", deb.display()))? {
        let mut entry = entry.with_context(|| format!("{}: a damaged entry", deb.display()))?;
        let path = entry.path()?.into_owned();
        if path.file_name().is_some_and(|n| n == "control") {
            let mut text = String::new();
            entry.read_to_string(&mut text).with_context(|| format!("{}: control is not text", deb.display()))?;
            let mut fields = std::collections::BTreeMap::new();
            let mut last: Option<String> = None;
            for line in text.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(v) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                        let v: &mut String = v;
                        v.push('\n');
                        v.push_str(line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    fields.insert(k.to_string(), v.trim().to_string());
                    last = Some(k.to_string());
                }
            }
            return Ok(fields);
        }
    }
    anyhow::bail!("{}: no control file", deb.display())
}

/// Unpacks the package's files into `dir/<sha256>/` (kept across runs) and returns it. The
/// directory appears in one rename, so it exists only complete, also with concurrent runs.
pub fn unpack(deb: &Path, sha256: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let target = dir.join(sha256);
    if target.exists() {
        return Ok(target);
    }
    let data = std::fs::read(deb).with_context(|| format!("cannot read {}", deb.display()))?;
    let members = ar_members(&data).map_err(|e| anyhow::anyhow!("{}: {e}", deb.display()))?;
    let (name, bytes) = members
        .iter()
        .find(|(n, _)| n.starts_with("data.tar"))
        .with_context(|| format!("{}: no data.tar member", deb.display()))?;
    let reader: Box<dyn Read> = match name.as_str() {
        "data.tar.xz" => Box::new(xz2::read::XzDecoder::new(*bytes)),
        "data.tar.gz" => Box::new(flate2::read::GzDecoder::new(*bytes)),
        "data.tar" => Box::new(*bytes),
        other => anyhow::bail!("{}: unsupported member {other}", deb.display()),
    };
    crate::cache::publish(&target, |partial| {
        std::fs::create_dir_all(partial).with_context(|| format!("cannot create {}", partial.display()))?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().with_context(|| format!("{}: not a tar archive", deb.display()))? {
            let mut entry = entry.with_context(|| format!("{}: a damaged entry", deb.display()))?;
            let path = entry.path().with_context(|| format!("{}: an entry's path", deb.display()))?.into_owned();
            // Only plain relative paths: nothing may land outside the unpack directory.
            if path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
                continue;
            }
            let out = partial.join(&path);
            match entry.header().entry_type() {
                tar::EntryType::Directory => {
                    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
                }
                tar::EntryType::Regular | tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(parent) = out.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("cannot create {}", parent.display()))?;
                    }
                    if entry.header().entry_type() == tar::EntryType::Link {
                        // Hard links point at another member of the archive.
                        let to = entry.link_name()?.with_context(|| {
                            format!("{}: hard link {} without a target", deb.display(), path.display())
                        })?;
                        let _ = std::fs::copy(partial.join(to), &out);
                    } else {
                        entry.unpack(&out).with_context(|| format!("cannot unpack {}", out.display()))?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok(target)
}

/// Copies a tree as hard links where possible (same file system), plain copies otherwise.
/// `to` may already hold other packages' files, or be reached through a symlink (merged /usr).
pub fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = std::fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            link_tree(&src, &dst)?;
        } else if meta.file_type().is_symlink() {
            // A directory symlink of merged /usr (bin -> usr/bin) is already in place.
            if std::fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if std::fs::symlink_metadata(&dst).is_err() && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ar_parsing() {
        let mut a = b"!<arch>\n".to_vec();
        for (n, body) in [("debian-binary", &b"2.0\n"[..]), ("data.tar.gz", &b"xyz"[..])] {
            a.extend(format!("{n:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, 100644, body.len()).as_bytes());
            a.extend(body);
            if body.len() % 2 == 1 {
                a.push(b'\n');
            }
        }
        let m = super::ar_members(&a).unwrap();
        assert_eq!(m.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["debian-binary", "data.tar.gz"]);
        assert_eq!(m[1].1, b"xyz");
        assert!(super::ar_members(b"nope").is_err());
        assert!(super::ar_members(&a[..a.len() - 2]).is_err());
    }
}

//! The FreeBSD image pipeline against a real HTTP server on loopback that serves a small
//! fake release (a BASIC-CI-named raw.xz disk, CHECKSUM.SHA256 in FreeBSD's format, a
//! MANIFEST, base.txz and src.txz): pinning, verified download, one-time sparse
//! decompression, a copy-on-write overlay that leaves the cached disk untouched, unpacking
//! the distribution sets; and a wrong checksum, a truncated transfer and a server that is gone.
//!
//! One test function: the cache location is process-wide (ADDRSEL_CACHE).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use addrsel_runner::arch::Arch;
use addrsel_runner::cache::sha256_hex;
use addrsel_runner::freebsd::image::{self as freebsd_image, ImageDef, QemuDef};
use addrsel_runner::freebsd::module_build as freebsd_kmod;

#[derive(Default)]
struct Site {
    files: HashMap<String, Vec<u8>>,
    /// Paths served cut short (announced length, fewer bytes).
    cut: HashMap<String, usize>,
}

/// Serves the site until the listener is dropped with the returned guard.
fn serve(site: Arc<Mutex<Site>>) -> (String, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let l = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { break };
            let mut req = [0u8; 2048];
            let n = s.read(&mut req).unwrap_or(0);
            let line = String::from_utf8_lossy(&req[..n]).lines().next().unwrap_or("").to_string();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let site = site.lock().unwrap();
            match site.files.get(&path) {
                Some(body) => {
                    let send = site.cut.get(&path).copied().unwrap_or(body.len());
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = s.write_all(&body[..send]);
                }
                None => {
                    let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    (base, listener)
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn txz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    xz(&b.into_inner().unwrap())
}

/// A 4 MiB "disk": a header, a long run of zeros, a trailer.
fn fake_disk() -> Vec<u8> {
    let mut d = vec![0u8; 4 << 20];
    d[..512].copy_from_slice(&[0x5a; 512]);
    let n = d.len();
    d[n - 4096..].copy_from_slice(&[0xa5; 4096]);
    d
}

fn def(base: &str) -> ImageDef {
    ImageDef {
        name: "freebsd-99.0-amd64".into(),
        description: "a fake release served on loopback".into(),
        release: "99.0-RELEASE".into(),
        arch: Arch::Amd64,
        image_dir: format!("{base}/CI-IMAGES/99.0-RELEASE/amd64/Latest"),
        image_prefix: "FreeBSD-99.0-RELEASE-amd64-BASIC-CI".into(),
        dist_dir: format!("{base}/releases/amd64/99.0-RELEASE"),
        qemu: QemuDef {
            binary: "qemu-system-x86_64".into(),
            machine: "q35".into(),
            cpu: "qemu64".into(),
            memory_mb: 1024,
            firmware: None,
            firmware_package: None,
            payload_device: "vtbd1".into(),
        },
    }
}

fn cache_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("freebsd"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn site_for(disk_xz: &[u8], listed_sha: &str, base_txz: &[u8], src_txz: &[u8]) -> Site {
    let img = "FreeBSD-99.0-RELEASE-amd64-BASIC-CI.raw.xz";
    let mut site = Site::default();
    site.files.insert(format!("/CI-IMAGES/99.0-RELEASE/amd64/Latest/{img}"), disk_xz.to_vec());
    site.files.insert(
        "/CI-IMAGES/99.0-RELEASE/amd64/Latest/CHECKSUM.SHA256".into(),
        format!(
            "SHA256 (FreeBSD-99.0-RELEASE-amd64-BASIC-CI.raw) = {}\nSHA256 ({img}) = {listed_sha}\n",
            "0".repeat(64)
        )
        .into_bytes(),
    );
    site.files.insert(
        "/releases/amd64/99.0-RELEASE/MANIFEST".into(),
        format!(
            "base.txz\t{}\t3\tbase\t\"Base system (MANDATORY)\"\ton\nsrc.txz\t{}\t2\tsrc\t\"System source tree\"\toff\n",
            sha256_hex(base_txz),
            sha256_hex(src_txz)
        )
        .into_bytes(),
    );
    site.files.insert("/releases/amd64/99.0-RELEASE/base.txz".into(), base_txz.to_vec());
    site.files.insert("/releases/amd64/99.0-RELEASE/src.txz".into(), src_txz.to_vec());
    site
}

#[test]
fn fake_release_on_loopback() {
    let cache = std::env::temp_dir().join(format!("addrsel-freebsd-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    // SAFETY: the only test in this binary; set before any thread reads the environment.
    unsafe { std::env::set_var("ADDRSEL_CACHE", &cache) };
    let quiet = |_: &str| {};

    let disk = fake_disk();
    let disk_xz = xz(&disk);
    let base_txz = txz(&[("./lib/libc.so.7", b"libc"), ("./usr/include/stdio.h", b"/* */"), ("./usr/bin/ls", b"no")]);
    let src_txz = txz(&[("./usr/src/sys/sys/param.h", b"/* param */"), ("./usr/src/bin/ls/ls.c", b"no")]);

    // 1. Good: pinned from the published files, fetched, verified, decompressed once.
    let site = Arc::new(Mutex::new(site_for(&disk_xz, &sha256_hex(&disk_xz), &base_txz, &src_txz)));
    let (base, listener) = serve(site.clone());
    let d = def(&base);
    let lock = freebsd_image::resolve_lock(&d, &quiet).unwrap();
    assert_eq!(lock.disk.name, "FreeBSD-99.0-RELEASE-amd64-BASIC-CI.raw.xz", "the .raw (uncompressed) entry is not it");
    assert_eq!(lock.disk.sha256, sha256_hex(&disk_xz));
    assert_eq!(lock.dist.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["base.txz", "src.txz"]);
    let raw = freebsd_image::disk(&lock, &quiet).unwrap();
    assert_eq!(std::fs::read(&raw).unwrap(), disk);
    let meta = std::fs::metadata(&raw).unwrap();
    assert!(meta.blocks() * 512 < meta.len() / 2, "zeros are holes: {} blocks for {} bytes", meta.blocks(), meta.len());
    // Cached: served no more, still there.
    site.lock().unwrap().files.clear();
    assert_eq!(freebsd_image::disk(&lock, &quiet).unwrap(), raw);

    // The overlay takes every write; the cached disk stays as it was.
    let work = cache.join("run");
    std::fs::create_dir_all(&work).unwrap();
    let overlay = work.join("overlay.qcow2");
    freebsd_image::overlay(&raw, &overlay, 8 << 30).unwrap();
    let info = Command::new("qemu-img").args(["info", "--output=json"]).arg(&overlay).output().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 8u64 << 30);
    assert_eq!(info["backing-filename"], raw.display().to_string());
    let before = sha256_hex(&std::fs::read(&raw).unwrap());
    let w = Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x77 0 1M"]).arg(&overlay).output().unwrap();
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    assert_eq!(sha256_hex(&std::fs::read(&raw).unwrap()), before, "the cached disk changed");

    // 2. Distribution sets: verified and unpacked, only what is needed.
    *site.lock().unwrap() = site_for(&disk_xz, &sha256_hex(&disk_xz), &base_txz, &src_txz);
    let sysroot = freebsd_kmod::sysroot(&lock, &quiet).unwrap();
    assert!(sysroot.join("lib/libc.so.7").exists() && sysroot.join("usr/include/stdio.h").exists());
    assert!(!sysroot.join("usr/bin/ls").exists());
    let sys = freebsd_kmod::kernel_sources(&lock, &quiet).unwrap();
    assert!(sys.join("sys/param.h").exists() && !sys.parent().unwrap().join("bin").exists());
    drop(listener);

    // 3. A wrong checksum: refused, nothing kept.
    let other = xz(b"a different disk");
    let site = Arc::new(Mutex::new(site_for(&other, &sha256_hex(&disk_xz), &base_txz, &src_txz)));
    let (base, listener) = serve(site.clone());
    let _ = std::fs::remove_dir_all(&cache);
    let lock = freebsd_image::resolve_lock(&def(&base), &quiet).unwrap();
    let err = format!("{:#}", freebsd_image::disk(&lock, &quiet).unwrap_err());
    assert!(err.contains("does not match the pinned"), "{err}");
    assert!(cache_files(&cache).is_empty(), "{:?}", cache_files(&cache));

    // 4. A transfer cut short: refused, nothing kept.
    {
        let mut s = site.lock().unwrap();
        *s = site_for(&disk_xz, &sha256_hex(&disk_xz), &base_txz, &src_txz);
        s.cut.insert("/CI-IMAGES/99.0-RELEASE/amd64/Latest/FreeBSD-99.0-RELEASE-amd64-BASIC-CI.raw.xz".into(), 1000);
    }
    let err = format!("{:#}", freebsd_image::disk(&lock, &quiet).unwrap_err());
    assert!(err.contains("broke off") || err.contains("does not match"), "{err}");
    assert!(cache_files(&cache).is_empty(), "{:?}", cache_files(&cache));

    // 5. The server is gone: the reason names the URL.
    drop(listener);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let gone = def(&base);
    let err = format!("{:#}", freebsd_image::resolve_lock(&gone, &quiet).unwrap_err());
    assert!(
        err.starts_with(&format!("cannot download {base}/CI-IMAGES/99.0-RELEASE/amd64/Latest/CHECKSUM.SHA256: ")),
        "{err}"
    );

    let _ = std::fs::remove_dir_all(&cache);
    let _: PathBuf = cache;
}

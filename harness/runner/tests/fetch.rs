//! Verified downloads against a real HTTP server on loopback: a good file, a wrong checksum,
//! a truncated transfer, a server that is gone, a corrupted cached copy, and reuse of the
//! cache with no network.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use addrsel_runner::cache::{FetchError, fetch_verified, sha256_hex};

/// Serves `body` to every request; with `cut`, announces the full length but sends only
/// that many bytes and closes (an interrupted download).
fn serve(body: Vec<u8>, cut: Option<usize>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/file.raw.xz", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let Ok(mut s) = stream else { continue };
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let n = cut.unwrap_or(body.len());
            let _ = s.write_all(&body[..n]);
            let _ = s.flush();
        }
    });
    (url, handle)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("addrsel-fetch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn leftovers(dir: &PathBuf) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn good_file_is_verified_and_cached() {
    let body = b"pretend this is a FreeBSD image".to_vec();
    let (url, _h) = serve(body.clone(), None);
    let dir = scratch("good");
    let p = fetch_verified(&url, &sha256_hex(&body), &dir, "img", &|_| {}).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), body);
    assert_eq!(leftovers(&dir), ["img"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_checksum_is_refused_and_nothing_is_kept() {
    let (url, _h) = serve(b"tampered".to_vec(), None);
    let dir = scratch("wrong");
    let err = fetch_verified(&url, &sha256_hex(b"the real thing"), &dir, "img", &|_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match the pinned"));
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_transfer_is_an_error_and_nothing_is_kept() {
    let body = vec![7u8; 100_000];
    let (url, _h) = serve(body.clone(), Some(40_000));
    let dir = scratch("truncated");
    let err = fetch_verified(&url, &sha256_hex(&body), &dir, "img", &|_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Unreachable(_) | FetchError::Mismatch { .. }), "{err}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn server_gone_says_cannot_download() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/file", listener.local_addr().unwrap());
    drop(listener);
    let dir = scratch("gone");
    let err = fetch_verified(&url, &sha256_hex(b"x"), &dir, "img", &|_| {}).unwrap_err();
    assert!(err.to_string().starts_with(&format!("cannot download {url}")), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupted_cache_is_fetched_again() {
    let body = b"the good bytes".to_vec();
    let (url, _h) = serve(body.clone(), None);
    let dir = scratch("corrupt");
    std::fs::write(dir.join("img"), b"bit rot").unwrap();
    let said = std::cell::RefCell::new(String::new());
    let p = fetch_verified(&url, &sha256_hex(&body), &dir, "img", &|why| said.borrow_mut().push_str(why)).unwrap();
    assert!(said.borrow().contains("does not match its sha256"));
    assert_eq!(std::fs::read(p).unwrap(), body);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_good_cached_copy_needs_no_network_and_stale_partials_go() {
    let body = b"cached".to_vec();
    let dir = scratch("offline");
    std::fs::write(dir.join("img"), &body).unwrap();
    // A partial file of a process that no longer exists (an interrupted earlier run).
    std::fs::write(dir.join("other.partial.999999999"), b"half").unwrap();
    let p = fetch_verified("http://127.0.0.1:9/unreachable", &sha256_hex(&body), &dir, "img", &|_| {}).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), body);
    addrsel_runner::cache::clean_stale_partials(&dir);
    assert_eq!(leftovers(&dir), ["img"]);
    std::fs::remove_dir_all(dir).unwrap();
}

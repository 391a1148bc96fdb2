//! Writing initramfs archives: cpio "newc" (SVR4 without CRC), the format the kernel unpacks.
//! Several archives concatenated form one initramfs.

/// One entry of an archive.
pub enum Entry<'a> {
    Dir(&'a str),
    File { path: &'a str, data: &'a [u8], executable: bool },
    Symlink { path: &'a str, target: &'a str },
    CharDev { path: &'a str, major: u32, minor: u32 },
}

pub struct Writer {
    out: Vec<u8>,
    ino: u32,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        Writer { out: Vec::new(), ino: 1 }
    }

    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        let name_len = name.len() + 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, size as u32, 0, 0, rdev.0, rdev.1, name_len as u32, 0];
        self.ino += 1;
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn add(&mut self, e: Entry) {
        match e {
            Entry::Dir(path) => self.header(path.trim_start_matches('/'), 0o040755, 0, (0, 0)),
            Entry::File { path, data, executable } => {
                self.header(
                    path.trim_start_matches('/'),
                    if executable { 0o100755 } else { 0o100644 },
                    data.len(),
                    (0, 0),
                );
                self.out.extend_from_slice(data);
                self.pad();
            }
            Entry::Symlink { path, target } => {
                self.header(path.trim_start_matches('/'), 0o120777, target.len(), (0, 0));
                self.out.extend_from_slice(target.as_bytes());
                self.pad();
            }
            Entry::CharDev { path, major, minor } => {
                self.header(path.trim_start_matches('/'), 0o020600, 0, (major, minor))
            }
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, (0, 0));
        // Keep the archive a multiple of 512 bytes, as cpio(1) does.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against GNU cpio, which reads the archive back.
    #[test]
    fn gnu_cpio_reads_it() {
        let mut w = Writer::new();
        w.add(Entry::Dir("etc"));
        w.add(Entry::File { path: "etc/hosts", data: b"127.0.0.1 localhost\n", executable: false });
        w.add(Entry::File { path: "init", data: b"#!/bin/sh\n", executable: true });
        w.add(Entry::Symlink { path: "bin", target: "usr/bin" });
        let data = w.finish();
        assert_eq!(data.len() % 512, 0);
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("GNU cpio is needed for this test (apt-get install cpio)");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &data).unwrap();
        let out = child.wait_with_output().unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{listing}");
        assert!(listing.contains("etc/hosts") && listing.contains("bin -> usr/bin"), "{listing}");
        assert!(listing.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" init")), "{listing}");
    }
}

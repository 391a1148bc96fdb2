//! The two machine architectures addrsel runs guests of, with every name each tool calls
//! them by.

use std::fmt;

/// amd64 (x86-64) or arm64 (AArch64). Reads either spelling: Debian's (`amd64`, `arm64`) or
/// the kernel's and FreeBSD's (`x86_64`, `aarch64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    pub fn parse(name: &str) -> Option<Arch> {
        match name {
            "amd64" | "x86_64" | "x86-64" => Some(Arch::Amd64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The machine this runs on, if it is one of the two.
    pub fn host() -> Option<Arch> {
        Arch::parse(std::env::consts::ARCH)
    }

    /// Debian's name (`dpkg --print-architecture`), also the name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel's name (`uname -m`), also FreeBSD's `MACHINE_ARCH`.
    pub fn uname(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// FreeBSD's download directory name (`TARGET_ARCH`).
    pub fn freebsd(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The GNU triplet of Debian's multiarch directories and cross compilers.
    pub fn gnu_triplet(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
        }
    }

    /// The kernel's `ARCH=` for Kbuild.
    pub fn kbuild(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86",
            Arch::Arm64 => "arm64",
        }
    }

    /// Rust's target for Linux with glibc.
    pub fn rust_linux(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Rust's target for FreeBSD.
    pub fn rust_freebsd(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-freebsd",
            Arch::Arm64 => "aarch64-unknown-freebsd",
        }
    }

    /// clang's target for a FreeBSD release, e.g. `aarch64-unknown-freebsd15.1`.
    pub fn clang_freebsd(self, release: &str) -> String {
        let version = release.split('-').next().unwrap_or(release);
        format!("{}-unknown-freebsd{version}", self.uname())
    }

    /// The QEMU system emulator and the Debian package that has it.
    pub fn qemu(self) -> (&'static str, &'static str) {
        match self {
            Arch::Amd64 => ("qemu-system-x86_64", "qemu-system-x86"),
            Arch::Arm64 => ("qemu-system-aarch64", "qemu-system-arm"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Arch::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown architecture `{name}` (amd64/x86_64 or arm64/aarch64)"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    #[test]
    fn both_spellings_and_every_name() {
        for (name, arch) in
            [("amd64", Arch::Amd64), ("x86_64", Arch::Amd64), ("arm64", Arch::Arm64), ("aarch64", Arch::Arm64)]
        {
            assert_eq!(Arch::parse(name), Some(arch));
        }
        assert_eq!(Arch::parse("riscv64"), None);
        assert_eq!(Arch::Arm64.clang_freebsd("15.1-RELEASE"), "aarch64-unknown-freebsd15.1");
        assert_eq!(Arch::Amd64.qemu(), ("qemu-system-x86_64", "qemu-system-x86"));
        let parsed: Arch = toml::from_str::<toml::Value>("a = \"aarch64\"").unwrap()["a"].clone().try_into().unwrap();
        assert_eq!(parsed, Arch::Arm64);
    }
}

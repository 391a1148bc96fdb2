//! The compiler a Debian kernel was built with, from its `CONFIG_CC_VERSION_TEXT`, as the
//! Debian packages and make variables that reproduce it for a module build.

use anyhow::Context as _;

use crate::arch::Arch;

/// `CONFIG_CC_VERSION_TEXT` of a kernel config.
pub fn cc_version_text(config: &str) -> Option<String> {
    config.lines().find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT=")).map(|v| v.trim_matches('"').to_string())
}

/// The packages and make variables that reproduce a kernel's compiler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// Build-root packages (besides the kernel's build scripts).
    pub packages: Vec<String>,
    /// The package of the compiler itself.
    pub compiler_package: String,
    /// The compiler command whose `--version` must name the kernel's compiler.
    pub compiler: String,
    /// `VAR=value` arguments for make.
    pub make_vars: Vec<String>,
}

/// What every module build needs besides the compiler: make and what Kbuild's recipes run.
const BUILD_TOOLS: &[&str] = &["make", "dash", "bash", "coreutils", "sed", "grep", "mawk", "findutils", "diffutils"];

/// Whether a Debian cross compiler package version (`12.2.0-14cross1`) is the same gcc
/// build as the kernel's compiler (`gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0`).
pub fn same_debian_gcc(cc_text: &str, cross_version: &str) -> bool {
    let kernel = cc_text.split_once("(Debian ").and_then(|(_, r)| r.split_once(')')).map(|(v, _)| v);
    let cross = cross_version
        .rsplit_once("cross")
        .map_or(cross_version, |(v, n)| if n.chars().all(|c| c.is_ascii_digit()) { v } else { cross_version });
    kernel == Some(cross)
}

impl Toolchain {
    /// From `CONFIG_CC_VERSION_TEXT`, the image's architecture and the build root's:
    /// `gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0` is Debian's gcc-12 in a native root, and
    /// gcc-12-aarch64-linux-gnu in an amd64 root building for arm64; `Debian clang version
    /// 19.1.7` is clang-19 with lld-19 and llvm-19, built with `LLVM=-19` as such kernels are.
    pub fn for_kernel(cc_text: &str, arch: Arch, root_arch: Arch) -> anyhow::Result<Toolchain> {
        let cross = arch != root_arch;
        let triplet = arch.gnu_triplet();
        let mut make_vars = vec![format!("ARCH={}", arch.kbuild())];
        let tools = BUILD_TOOLS.iter().map(|s| s.to_string());
        if let Some(rest) = cc_text.split_once("clang version ").map(|(_, r)| r) {
            let major = rest.split('.').next().filter(|m| m.chars().all(|c| c.is_ascii_digit()) && !m.is_empty());
            let major = major.with_context(|| format!("cannot read the clang version in `{cc_text}`"))?;
            make_vars.push(format!("LLVM=-{major}"));
            let compiler = format!("clang-{major}");
            let packages = tools.chain([compiler.clone(), format!("lld-{major}"), format!("llvm-{major}")]).collect();
            return Ok(Toolchain { packages, compiler_package: compiler.clone(), compiler, make_vars });
        }
        let program = cc_text.split_whitespace().next().unwrap_or("");
        // gcc-12, or x86_64-linux-gnu-gcc-14: the version from the name without a prefix.
        let base = program.rsplit_once("-linux-gnu-").map_or(program, |(_, b)| b);
        let major = base
            .strip_prefix("gcc-")
            .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
            .with_context(|| {
                format!("`{cc_text}` is neither a versioned Debian gcc nor clang: cannot tell which compiler to use")
            })?;
        let native = format!("gcc-{major}");
        let mut packages: Vec<String> = tools.chain([native.clone()]).collect();
        let (compiler_package, compiler) = if cross {
            let package = format!("gcc-{major}-{triplet}");
            packages.push(package.clone());
            make_vars.push(format!("CROSS_COMPILE={triplet}-"));
            (package, format!("{triplet}-gcc-{major}"))
        } else {
            (native.clone(), native.clone())
        };
        make_vars.push(format!("CC={compiler}"));
        make_vars.push(format!("HOSTCC={native}"));
        Ok(Toolchain { packages, compiler_package, compiler, make_vars })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchains_follow_the_kernels_compiler() {
        let t = Toolchain::for_kernel("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", Arch::Amd64, Arch::Amd64).unwrap();
        assert_eq!(t.compiler, "gcc-12");
        assert!(t.packages.contains(&"gcc-12".to_string()) && t.packages.contains(&"make".to_string()));
        assert_eq!(t.make_vars, ["ARCH=x86", "CC=gcc-12", "HOSTCC=gcc-12"]);

        let t = Toolchain::for_kernel("aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0", Arch::Arm64, Arch::Amd64)
            .unwrap();
        assert_eq!(t.compiler, "aarch64-linux-gnu-gcc-14");
        assert!(t.packages.contains(&"gcc-14-aarch64-linux-gnu".to_string()));
        assert!(t.packages.contains(&"gcc-14".to_string()), "a native compiler for host programs");
        assert_eq!(
            t.make_vars,
            ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "CC=aarch64-linux-gnu-gcc-14", "HOSTCC=gcc-14"]
        );

        let t = Toolchain::for_kernel("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", Arch::Arm64, Arch::Arm64).unwrap();
        assert_eq!(t.compiler, "gcc-12", "a native arm64 root");
        assert_eq!(t.make_vars, ["ARCH=arm64", "CC=gcc-12", "HOSTCC=gcc-12"]);

        let t = Toolchain::for_kernel("Debian clang version 19.1.7 (3+b1)", Arch::Amd64, Arch::Amd64).unwrap();
        assert_eq!(t.compiler, "clang-19");
        assert!(t.packages.contains(&"lld-19".to_string()));
        assert!(t.make_vars.contains(&"LLVM=-19".to_string()));

        let e = Toolchain::for_kernel("cc (GCC) 13.1.0", Arch::Amd64, Arch::Amd64).unwrap_err();
        assert!(format!("{e:#}").contains("cannot tell which compiler"), "{e:#}");
    }

    #[test]
    fn cross_compilers_match_only_the_same_debian_build() {
        assert!(same_debian_gcc("aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0", "14.2.0-19cross1"));
        assert!(!same_debian_gcc("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", "12.2.0-14cross1"));
        assert!(!same_debian_gcc("Debian clang version 19.1.7", "19.1.7"));
    }

    #[test]
    fn the_config_names_the_compiler() {
        let config = "# c\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\nCONFIG_X=y\n";
        assert_eq!(cc_version_text(config).as_deref(), Some("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"));
        assert_eq!(cc_version_text("CONFIG_X=y\n"), None);
    }
}

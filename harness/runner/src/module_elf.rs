//! Verified toolchains for the test kernel modules: nothing is loaded into a kernel before
//! its ELF file shows how it was built.
//!
//! FreeBSD loads arm64 modules as shared objects and finds their SYSINITs and module
//! metadata through `__start_set_*`/`__stop_set_*` in `.dynsym`: if those are not global
//! there, kldload succeeds and the module silently never runs (what happens when GNU ld from
//! binutils is picked up instead of ld.lld). amd64 modules are relocatable objects whose set
//! sections the loader walks. Linux modules must carry the target kernel's vermagic and be
//! built by the compiler that built the kernel.

use anyhow::Context as _;
use object::read::elf::{ElfFile, FileHeader, SectionHeader};
use object::{Endianness, elf};
use serde::Serialize;

/// What a module is, from its ELF header and sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ModuleKind {
    Linux,
    Freebsd,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub ok: bool,
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub kind: ModuleKind,
    pub arch: String,
    /// `relocatable` or `shared object`.
    pub format: String,
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn render(&self) -> String {
        let mut out = format!("{:?} module, {}, {}\n", self.kind, self.arch, self.format);
        for c in &self.checks {
            out.push_str(&format!("  [{}] {}\n", if c.ok { "ok" } else { "FAIL" }, c.what));
        }
        out.push_str(if self.ok() { "verdict: may be loaded\n" } else { "verdict: must NOT be loaded\n" });
        out
    }
}

/// What a Linux module must match: the target kernel's vermagic (as carried by a module
/// shipped with it) and its compiler (`CONFIG_CC_VERSION_TEXT`).
#[derive(Clone, Debug)]
pub struct LinuxTarget {
    pub vermagic: String,
    pub cc_version_text: String,
}

struct Elf<'a> {
    data: &'a [u8],
    file: ElfFile<'a, elf::FileHeader64<Endianness>>,
}

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> anyhow::Result<Self> {
        let file = ElfFile::parse(data).context("not a 64-bit ELF file")?;
        Ok(Elf { data, file })
    }

    fn endian(&self) -> Endianness {
        self.file.endian()
    }

    fn header(&self) -> &elf::FileHeader64<Endianness> {
        self.file.elf_header()
    }

    fn section(&self, name: &str) -> Option<&'a [u8]> {
        let table = self.file.elf_section_table();
        table.section_by_name(self.endian(), name.as_bytes()).and_then(|(_, s)| s.data(self.endian(), self.data).ok())
    }

    fn section_names(&self) -> Vec<String> {
        let table = self.file.elf_section_table();
        table
            .iter()
            .filter_map(|s| table.section_name(self.endian(), s).ok())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// (name, binding, visibility) of every `.dynsym` entry.
    fn dynamic_symbols(&self) -> Vec<(String, elf::SymbolBind, elf::SymbolVisibility)> {
        let table = self.file.elf_section_table();
        let Ok(symbols) = table.symbols(self.endian(), self.data, elf::SHT_DYNSYM) else { return vec![] };
        symbols
            .iter()
            .filter_map(|s| {
                let name = symbols.symbol_name(self.endian(), s).ok()?;
                Some((String::from_utf8_lossy(name).into_owned(), s.st_bind(), s.st_visibility()))
            })
            .collect()
    }

    /// NUL-separated strings of a section.
    fn strings(&self, section: &str) -> Vec<String> {
        self.section(section)
            .map(|d| {
                d.split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn arch_name(machine: elf::Machine) -> String {
    if machine == elf::EM_X86_64 {
        "amd64".into()
    } else if machine == elf::EM_AARCH64 {
        "arm64".into()
    } else {
        format!("machine {machine:?}")
    }
}

/// The `(Debian 12.2.0-14+deb12u1) 12.2.0` part of a compiler's version text: what a
/// native and a cross build of the same compiler share.
pub fn compiler_identity(text: &str) -> String {
    let t = text.trim().trim_start_matches("GCC: ");
    match t.find(" (") {
        Some(i) if !t.starts_with('(') && t[..i].contains("gcc") => t[i + 1..].to_string(),
        _ => t.to_string(),
    }
}

/// Verifies a module file; `linux` holds what a Linux module must match.
pub fn verify(data: &[u8], linux: Option<&LinuxTarget>) -> anyhow::Result<Verdict> {
    let e = Elf::parse(data)?;
    let h = e.header();
    let endian = e.endian();
    let osabi = h.e_ident().os_abi;
    let e_type = h.e_type(endian);
    let arch = arch_name(h.e_machine(endian));
    let sections = e.section_names();
    let format = if e_type == elf::ET_REL {
        "relocatable"
    } else if e_type == elf::ET_DYN {
        "shared object"
    } else {
        "not a module (neither relocatable nor shared object)"
    };
    let is_linux = sections.iter().any(|s| s == ".modinfo" || s == ".gnu.linkonce.this_module");
    let is_freebsd = osabi == elf::ELFOSABI_FREEBSD || sections.iter().any(|s| s == "set_modmetadata_set");
    // What the loader accepts: Linux and FreeBSD amd64 load relocatable objects (`ld -r`),
    // FreeBSD arm64 loads shared objects (`ld -shared`).
    let wanted = if is_linux || arch != "arm64" { elf::ET_REL } else { elf::ET_DYN };
    let mut checks = vec![Check {
        ok: e_type == wanted,
        what: format!(
            "ELF type: {format}{}",
            if e_type == wanted {
                String::new()
            } else if wanted == elf::ET_DYN {
                "; FreeBSD arm64 modules are shared objects (ld.lld -shared), kldload refuses anything else".into()
            } else {
                "; the kernel loads only relocatable module files (ld -r)".into()
            }
        ),
    }];
    let kind = if is_linux {
        ModuleKind::Linux
    } else if is_freebsd {
        ModuleKind::Freebsd
    } else {
        anyhow::bail!("neither a Linux module (.modinfo) nor a FreeBSD one (OS/ABI FreeBSD or set_modmetadata_set)");
    };
    match kind {
        ModuleKind::Freebsd => checks.extend(freebsd_checks(&e, &sections, &arch)),
        ModuleKind::Linux => checks.extend(linux_checks(&e, linux)),
    }
    Ok(Verdict { kind, arch, format: format.into(), checks })
}

/// A FreeBSD module: built by clang, linked by ld.lld (amd64: OS/ABI stamped FreeBSD; arm64:
/// `Linker: LLD`), with linker sets the kernel's linker can find.
fn freebsd_checks(e: &Elf, sections: &[String], arch: &str) -> Vec<Check> {
    let endian = e.endian();
    let (osabi, e_type) = (e.header().e_ident().os_abi, e.header().e_type(endian));
    let comment = e.strings(".comment");
    let mut checks = Vec::new();
    let mut check = |ok: bool, what: String| checks.push(Check { ok, what });
    // amd64 modules are linked with `-m elf_x86_64_fbsd`, which stamps OS/ABI FreeBSD (GNU
    // ld -r does not). arm64's `-m aarch64elf` leaves System V with either linker and the
    // kernel does not look, so there the linker is told by .comment.
    if e_type == elf::ET_REL && arch == "amd64" {
        check(
            osabi == elf::ELFOSABI_FREEBSD,
            if osabi == elf::ELFOSABI_FREEBSD {
                "OS/ABI is FreeBSD".into()
            } else {
                "OS/ABI is not FreeBSD: the last link was done by a linker that does not know FreeBSD (GNU ld from binutils?); link with ld.lld -m elf_x86_64_fbsd".into()
            },
        );
    }
    let clang = comment.iter().any(|c| c.contains("clang version"));
    let gcc = comment.iter().any(|c| c.starts_with("GCC:"));
    check(clang && !gcc, format!("compiled by clang only (.comment: {})", comment.join(" | ")));
    for set in ["set_sysinit_set", "set_modmetadata_set"] {
        check(sections.iter().any(|s| s == set), format!("has the linker set section {set}"));
    }
    if e_type == elf::ET_DYN {
        let lld = comment.iter().any(|c| c.starts_with("Linker:") && c.contains("LLD"));
        check(
            lld,
            if lld {
                "linked by LLD (.comment has `Linker: ... LLD`)".into()
            } else {
                "no `Linker: ... LLD` in .comment: not linked by ld.lld".into()
            },
        );
        checks.push(linker_set_symbols(e, sections));
    }
    checks
}

/// Whether every `__start_set_*`/`__stop_set_*` is GLOBAL with default or protected
/// visibility in `.dynsym`: the kernel's linker finds linker sets only through them.
fn linker_set_symbols(e: &Elf, sections: &[String]) -> Check {
    let binding = |b: elf::SymbolBind| {
        if b == elf::STB_GLOBAL {
            "GLOBAL"
        } else if b == elf::STB_WEAK {
            "WEAK"
        } else {
            "LOCAL"
        }
    };
    let visibility = |v: elf::SymbolVisibility| {
        if v == elf::STV_HIDDEN {
            "HIDDEN"
        } else if v == elf::STV_INTERNAL {
            "INTERNAL"
        } else if v == elf::STV_PROTECTED {
            "PROTECTED"
        } else {
            "DEFAULT"
        }
    };
    let dynsyms = e.dynamic_symbols();
    let mut bad = Vec::new();
    for set in sections.iter().filter(|s| s.starts_with("set_")) {
        for edge in ["__start_", "__stop_"] {
            let name = format!("{edge}{set}");
            match dynsyms.iter().find(|(n, _, _)| *n == name) {
                Some((_, bind, vis))
                    if *bind == elf::STB_GLOBAL && (*vis == elf::STV_DEFAULT || *vis == elf::STV_PROTECTED) => {}
                Some((_, bind, vis)) => {
                    bad.push(format!("{name} is {} {} in .dynsym", binding(*bind), visibility(*vis)))
                }
                None => bad.push(format!("{name} is missing from .dynsym")),
            }
        }
    }
    Check {
        ok: bad.is_empty(),
        what: if bad.is_empty() {
            "__start_set_*/__stop_set_* are GLOBAL with default or protected visibility in .dynsym".into()
        } else {
            format!(
                "{}: the kernel's linker finds linker sets through .dynsym, so this module would load and silently never run its SYSINITs or module event handler",
                bad.join("; ")
            )
        },
    }
}

/// A Linux module: its vermagic and compiler are the target kernel's.
fn linux_checks(e: &Elf, linux: Option<&LinuxTarget>) -> Vec<Check> {
    let modinfo = e.strings(".modinfo");
    let comment = e.strings(".comment");
    let vermagic = modinfo.iter().find_map(|s| s.strip_prefix("vermagic=")).map(str::to_string);
    let mut checks =
        vec![Check { ok: vermagic.is_some(), what: format!("vermagic: {}", vermagic.as_deref().unwrap_or("missing")) }];
    let compiler =
        comment.iter().find(|c| c.starts_with("GCC:") || c.contains("clang version")).cloned().unwrap_or_default();
    match linux {
        Some(t) => {
            checks.push(Check {
                ok: vermagic.as_deref() == Some(t.vermagic.as_str()),
                what: format!("vermagic equals the target kernel's `{}`", t.vermagic),
            });
            checks.push(Check {
                ok: !compiler.is_empty() && compiler_identity(&compiler) == compiler_identity(&t.cc_version_text),
                what: format!("built by the kernel's compiler `{}` (module: `{}`)", t.cc_version_text, compiler),
            });
        }
        None => checks.push(Check {
            ok: false,
            what: "no target kernel given: vermagic and compiler cannot be compared (--target)".into(),
        }),
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_identity_ignores_the_program_name() {
        assert_eq!(compiler_identity("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"), "(Debian 12.2.0-14+deb12u1) 12.2.0");
        assert_eq!(
            compiler_identity("aarch64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"),
            "(Debian 12.2.0-14+deb12u1) 12.2.0"
        );
        assert_eq!(compiler_identity("GCC: (Debian 12.2.0-14+deb12u1) 12.2.0"), "(Debian 12.2.0-14+deb12u1) 12.2.0");
        assert_eq!(compiler_identity("Debian clang version 16.0.6 (15)"), "Debian clang version 16.0.6 (15)");
    }
}

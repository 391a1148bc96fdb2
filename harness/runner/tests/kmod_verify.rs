//! `kmod verify` against FreeBSD-style module objects built here with real toolchains: clang
//! for FreeBSD targets, linked once with ld.lld (what FreeBSD's bsd.kmod.mk uses) and once
//! with GNU ld from binutils (what a build picks up by mistake). arm64 modules are shared
//! objects, amd64 modules relocatable objects, as FreeBSD's kernel linker expects.
//!
//! Needs clang, ld.lld, aarch64-linux-gnu-ld and ld (`cargo xtask test` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use addrsel_runner::module_elf::{ModuleKind, Verdict, verify};

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/freebsd_like_module.c");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("addrsel-kmod-verify-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} is needed for this test ({e}); `cargo xtask test` installs it", argv[0]));
    assert!(out.status.success(), "{}: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn verdict(path: &Path) -> Verdict {
    verify(&std::fs::read(path).unwrap(), None).unwrap()
}

fn failing(v: &Verdict) -> String {
    v.checks.iter().filter(|c| !c.ok).map(|c| c.what.clone()).collect::<Vec<_>>().join("\n")
}

const SET_SYMBOLS: [&str; 4] =
    ["__start_set_sysinit_set", "__stop_set_sysinit_set", "__start_set_modmetadata_set", "__stop_set_modmetadata_set"];

#[test]
fn arm64_shared_objects_linked_by_lld_pass_and_by_gnu_ld_fail_naming_the_symbols() {
    let d = tmp("arm64");
    let s = |n: &str| d.join(n).to_string_lossy().into_owned();
    run(&["clang", "--target=aarch64-unknown-freebsd", "-fPIC", "-O2", "-c", SOURCE, "-o", &s("m.o")]);
    // kmod.mk: a relocatable link, then a shareable one, both with `-m aarch64elf`.
    run(&["ld.lld", "-m", "aarch64elf", "--no-relax", "-r", "-o", &s("m.kld"), &s("m.o")]);
    run(&[
        "ld.lld",
        "-m",
        "aarch64elf",
        "-Bshareable",
        "-znotext",
        "-znorelro",
        "--no-relax",
        "-o",
        &s("lld.ko"),
        &s("m.kld"),
    ]);
    let good = verdict(&d.join("lld.ko"));
    assert_eq!((good.kind, good.arch.as_str(), good.format.as_str()), (ModuleKind::Freebsd, "arm64", "shared object"));
    // The compiler's object and the relocatable intermediate are not loadable arm64 modules,
    // and the reason says so (not a wrong linker).
    for unlinked in ["m.o", "m.kld"] {
        let v = verdict(&d.join(unlinked));
        let why = failing(&v);
        assert!(!v.ok() && why.contains("FreeBSD arm64 modules are shared objects"), "{}", v.render());
        assert!(!why.contains("OS/ABI"), "{why}");
    }
    assert!(good.ok(), "{}", good.render());

    run(&[
        "aarch64-linux-gnu-ld",
        "-Bshareable",
        "-znotext",
        "-z",
        "start-stop-visibility=hidden",
        "-o",
        &s("gnu-hidden.ko"),
        &s("m.o"),
    ]);
    let bad = verdict(&d.join("gnu-hidden.ko"));
    assert!(!bad.ok());
    let why = failing(&bad);
    for sym in SET_SYMBOLS {
        assert!(why.contains(sym), "{sym} is not named:\n{why}");
    }
    assert!(why.contains("silently never run"), "{why}");
    assert!(why.contains("not linked by ld.lld"), "{why}");

    // GNU ld with its default visibility keeps the symbols usable but is still not the
    // FreeBSD toolchain.
    run(&["aarch64-linux-gnu-ld", "-Bshareable", "-znotext", "-o", &s("gnu-default.ko"), &s("m.o")]);
    let bad = verdict(&d.join("gnu-default.ko"));
    let why = failing(&bad);
    assert!(!bad.ok() && why.contains("not linked by ld.lld") && !why.contains("__start_set"), "{}", bad.render());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn amd64_relocatable_objects_linked_by_lld_pass_and_by_gnu_ld_fail() {
    let d = tmp("amd64");
    let s = |n: &str| d.join(n).to_string_lossy().into_owned();
    run(&["clang", "--target=x86_64-unknown-freebsd", "-O2", "-c", SOURCE, "-o", &s("m.o")]);
    run(&["ld.lld", "-m", "elf_x86_64_fbsd", "-r", "-o", &s("lld.ko"), &s("m.o")]);
    let good = verdict(&d.join("lld.ko"));
    assert_eq!((good.kind, good.arch.as_str(), good.format.as_str()), (ModuleKind::Freebsd, "amd64", "relocatable"));
    assert!(good.ok(), "{}", good.render());

    run(&["ld", "-r", "-o", &s("gnu.ko"), &s("m.o")]);
    let bad = verdict(&d.join("gnu.ko"));
    assert!(!bad.ok() && failing(&bad).contains("OS/ABI is not FreeBSD"), "{}", bad.render());

    // Compiled by gcc: the wrong compiler even before linking.
    run(&["gcc", "-O2", "-c", SOURCE, "-o", &s("gcc.o")]);
    run(&["ld.lld", "-m", "elf_x86_64_fbsd", "-r", "-o", &s("gcc.ko"), &s("gcc.o")]);
    let bad = verdict(&d.join("gcc.ko"));
    assert!(!bad.ok() && failing(&bad).contains("compiled by clang only"), "{}", bad.render());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn files_that_are_not_modules_are_refused_with_a_reason() {
    assert!(format!("{:#}", verify(b"not an ELF file", None).unwrap_err()).contains("not a 64-bit ELF"));
    // A plain executable: ELF, but neither a Linux nor a FreeBSD module.
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(format!("{:#}", verify(&exe, None).unwrap_err()).contains("neither a Linux module"));
}

//! The resolver probe programs (harness/resolvers): musl's and c-ares' getaddrinfo and Go's
//! resolver, each built from the target's own Debian packages so that what runs is the
//! library the target ships. For the `host` target, built here with this machine's
//! packages (installed as root on Debian when missing).
//!
//! Built into the cache as one directory with a manifest of sha256 sums, checked before
//! every use: a damaged program is built again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cache;

/// The programs, as `harness/model`'s `resolver_command` names them.
pub const PROGRAMS: [&str; 4] =
    ["addrsel-resolve-musl", "addrsel-resolve-c-ares", "addrsel-resolve-go", "addrsel-resolve-go-cgo"];

const MANIFEST: &str = "SHA256SUMS";

fn sources_dir() -> PathBuf {
    crate::repo_root().join("harness/resolvers")
}

/// Every source file and the versions of the packages that build them, for the cache key.
fn inputs(versions: &str) -> anyhow::Result<String> {
    let mut text = versions.to_string();
    for f in ["musl.c", "c-ares.c", "go/go.mod", "go/main.go"] {
        let p = sources_dir().join(f);
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        text.push_str(&format!("{f} {}\n", cache::sha256_hex(&bytes)));
    }
    Ok(text)
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{what} failed ({}): {}", out.status, err.lines().rev().take(8).collect::<Vec<_>>().join(" | "));
    }
    Ok(())
}

fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether every program in `dir` still has the sum recorded when it was built.
pub fn verified(dir: &Path) -> Result<(), String> {
    verified_programs(dir, &PROGRAMS)
}

fn verified_programs(dir: &Path, programs: &[&str]) -> Result<(), String> {
    let manifest =
        std::fs::read_to_string(dir.join(MANIFEST)).map_err(|e| format!("{}: {e}", dir.join(MANIFEST).display()))?;
    for &p in programs {
        let want = manifest
            .lines()
            .find_map(|l| l.split_once("  ").filter(|(_, n)| *n == p).map(|(h, _)| h.to_string()))
            .ok_or_else(|| format!("{p} is not in {}", dir.join(MANIFEST).display()))?;
        let got = cache::sha256_file(&dir.join(p)).map_err(|e| format!("{}: {e}", dir.join(p).display()))?;
        if got != want {
            return Err(format!("{} does not match the sha256 recorded when it was built", dir.join(p).display()));
        }
    }
    Ok(())
}

fn write_manifest(dir: &Path) -> anyhow::Result<()> {
    write_manifest_of(dir, &PROGRAMS)
}

fn write_manifest_of(dir: &Path, programs: &[&str]) -> anyhow::Result<()> {
    let mut text = String::new();
    for &p in programs {
        let sum = cache::sha256_file(&dir.join(p)).with_context(|| format!("cannot read {}", dir.join(p).display()))?;
        text.push_str(&format!("{sum}  {p}\n"));
    }
    std::fs::write(dir.join(MANIFEST), text).with_context(|| format!("cannot write {}", dir.join(MANIFEST).display()))
}

/// The Go toolchain's environment: offline, local toolchain only, caches in `work`.
fn go_env(cmd: &mut Command, work: &Path, cgo: bool) {
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-trimpath")
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath"))
        .env("HOME", work)
        .env("CGO_ENABLED", if cgo { "1" } else { "0" });
}

/// The programs for the host target, built with this machine's packages.
pub fn for_host(log: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let musl_gcc = crate::tools::program("musl-gcc", "musl-tools", "the musl resolver probe is built with musl-gcc")?;
    let go = crate::tools::program("go", "golang-go", "the Go resolver probes are built with go")?;
    let gcc = crate::tools::program("gcc", "gcc", "the c-ares resolver probe is built with gcc")?;
    if !Path::new("/usr/include/ares.h").exists() {
        crate::tools::install(&["libc-ares-dev"], "the c-ares resolver probe needs libc-ares-dev")?;
    }
    let versions = format!(
        "musl-dev {}\nlibc-ares-dev {}\ngo {}\n",
        package_version("musl-dev"),
        package_version("libc-ares-dev"),
        String::from_utf8_lossy(&Command::new(&go).arg("version").output().context("cannot run go version")?.stdout)
            .trim()
    );
    let key = cache::sha256_hex(inputs(&versions)?.as_bytes());
    let dir = cache::cache_dir().join("resolvers").join(format!("host-{}", &key[..16]));
    if dir.exists() {
        match verified(&dir) {
            Ok(()) => return Ok(dir),
            Err(why) => {
                log(&format!("{why}; building the resolver probes again"));
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    log("building the resolver probe programs (musl, c-ares, Go) with this machine's packages");
    cache::publish(&dir, |partial| {
        std::fs::create_dir_all(partial).with_context(|| format!("cannot create {}", partial.display()))?;
        let src = sources_dir();
        run(
            Command::new(&musl_gcc)
                .args(["-static", "-O2", "-o"])
                .arg(partial.join(PROGRAMS[0]))
                .arg(src.join("musl.c")),
            "musl-gcc",
        )?;
        run(
            Command::new(&gcc)
                .args(["-O2", "-o"])
                .arg(partial.join(PROGRAMS[1]))
                .arg(src.join("c-ares.c"))
                .arg("-lcares"),
            "gcc (c-ares probe)",
        )?;
        let work = partial.join(".go");
        for (name, cgo) in [(PROGRAMS[2], false), (PROGRAMS[3], true)] {
            let mut cmd = Command::new(&go);
            cmd.args(["build", "-o"]).arg(partial.join(name)).arg(".").current_dir(src.join("go"));
            go_env(&mut cmd, &work, cgo);
            run(&mut cmd, &format!("go build ({name})"))?;
        }
        let _ = std::fs::remove_dir_all(&work);
        std::fs::write(partial.join("VERSIONS"), &versions)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        write_manifest(partial)
    })?;
    verified(&dir).map_err(anyhow::Error::msg)?;
    Ok(dir)
}

/// The C compiler that builds for `arch` on this machine, and the packages it needs.
fn c_compiler(arch: crate::arch::Arch) -> anyhow::Result<PathBuf> {
    use crate::arch::Arch;
    match arch {
        Arch::Amd64 => crate::tools::program("gcc", "gcc", "the resolver probes are built with gcc"),
        Arch::Arm64 => {
            if !Path::new("/usr/aarch64-linux-gnu/include/stdio.h").exists()
                || crate::tools::find_program("aarch64-linux-gnu-gcc").is_err()
            {
                crate::tools::install(
                    &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
                    "the arm64 resolver probes are cross-built with aarch64-linux-gnu-gcc",
                )?;
            }
            crate::tools::find_program("aarch64-linux-gnu-gcc")
        }
    }
}

fn compiler_says(cc: &Path, arg: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new(cc).arg(arg).output().with_context(|| format!("cannot run {} {arg}", cc.display()))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The programs for a Linux guest, built from the image's own locked packages: musl's
/// libc.a and c-ares' headers and library of the guest's release (so a trixie guest runs
/// musl 1.2.5 and c-ares 1.34, a bookworm guest musl 1.2.3 and c-ares 1.18), compiled with
/// this machine's gcc (or its aarch64 cross gcc). musl and pure Go are static; c-ares and
/// go-cgo are dynamic and use the guest's own libcares and glibc, put into the initramfs
/// with them. Go itself is this machine's golang-go for every guest (its resolver is
/// compiled into the program; `VERSIONS` in the directory says which).
pub fn for_image(
    def: &crate::linux::image::ImageDef,
    lock: &crate::linux::image::Lock,
    log: &dyn Fn(&str),
) -> anyhow::Result<PathBuf> {
    use crate::arch::Arch;
    let arch = def.arch;
    let pick = |name: &str| lock.package.iter().find(|p| p.name == name).cloned();
    let musl_dev = pick("musl-dev").with_context(|| format!("{} locks no musl-dev", def.name))?;
    let cares_dev = pick("libc-ares-dev").with_context(|| format!("{} locks no libc-ares-dev", def.name))?;
    // trixie's library is libcares2 (libc-ares2 is its transitional package).
    let cares_lib = pick("libcares2")
        .or_else(|| pick("libc-ares2"))
        .with_context(|| format!("{} locks no libcares library", def.name))?;
    let cc = c_compiler(arch)?;
    let go = crate::tools::program("go", "golang-go", "the Go resolver probes are built with go")?;
    let go_version =
        String::from_utf8_lossy(&Command::new(&go).arg("version").output().context("cannot run go version")?.stdout)
            .trim()
            .to_string();
    let cc_version = String::from_utf8_lossy(
        &Command::new(&cc).arg("--version").output().with_context(|| format!("cannot run {}", cc.display()))?.stdout,
    )
    .lines()
    .next()
    .unwrap_or("")
    .to_string();
    // A guest older than this machine's glibc: link against its own (see linux::sysroot).
    let sysroot = crate::linux::sysroot::for_image(def, lock, log)?;
    let link_flags = sysroot.as_deref().map(|r| crate::linux::sysroot::gcc_flags(r, arch)).unwrap_or_default();
    let versions = format!(
        "target {}\nmusl-dev {}\nlibc-ares-dev {}\n{} {}\ngo {go_version}\ncc {cc_version}\nlinked against {}\n",
        def.name,
        musl_dev.version,
        cares_dev.version,
        cares_lib.name,
        cares_lib.version,
        sysroot.as_deref().map_or("this machine's glibc".to_string(), |r| r.display().to_string())
    );
    let key = cache::sha256_hex(
        format!("{}{} {} {}", inputs(&versions)?, musl_dev.sha256, cares_dev.sha256, cares_lib.sha256).as_bytes(),
    );
    let dir = cache::cache_dir().join("resolvers").join(format!("{}-{}", def.name, &key[..16]));
    if dir.exists() {
        match verified(&dir) {
            Ok(()) => return Ok(dir),
            Err(why) => {
                log(&format!("{why}; building the resolver probes again"));
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    log(&format!(
        "building the resolver probes (musl {}, c-ares {}, {go_version}) for {}",
        musl_dev.version, cares_lib.version, def.name
    ));
    let fetched = crate::linux::packages::fetch_packages(&[musl_dev, cares_dev, cares_lib], log)?;
    let unpack_dir = cache::cache_dir().join("unpacked");
    let mut roots = Vec::new();
    for (p, deb) in &fetched {
        roots.push(crate::linux::deb::unpack(deb, &p.sha256, &unpack_dir)?);
    }
    let (musl_root, cares_dev_root, cares_lib_root) = (&roots[0], &roots[1], &roots[2]);
    let musl_triplet = match arch {
        Arch::Amd64 => "x86_64-linux-musl",
        Arch::Arm64 => "aarch64-linux-musl",
    };
    let musl_lib = musl_root.join("usr/lib").join(musl_triplet);
    let libcares = std::fs::read_dir(cares_lib_root.join("usr/lib").join(arch.gnu_triplet()))
        .with_context(|| format!("{} has no library directory", cares_lib_root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libcares.so.2.")) && !p.is_symlink())
        .context("no libcares.so.2.* in the locked libcares package")?;
    let src = sources_dir();
    cache::publish(&dir, |partial| {
        std::fs::create_dir_all(partial).with_context(|| format!("cannot create {}", partial.display()))?;
        // musl-gcc's specs file, spelled out: musl's headers and startup files from the
        // guest's musl-dev, gcc's own headers and libgcc, nothing of glibc.
        run(
            Command::new(&cc)
                .args(["-static", "-O2", "-nostdinc", "-nostdlib", "-isystem"])
                .arg(musl_root.join("usr/include").join(musl_triplet))
                .arg("-isystem")
                .arg(compiler_says(&cc, "-print-file-name=include")?)
                .arg("-o")
                .arg(partial.join(PROGRAMS[0]))
                .arg(musl_lib.join("crt1.o"))
                .arg(musl_lib.join("crti.o"))
                .arg(src.join("musl.c"))
                .arg(musl_lib.join("libc.a"))
                .arg(compiler_says(&cc, "-print-libgcc-file-name")?)
                .arg(musl_lib.join("crtn.o")),
            &format!("{} (musl probe for {})", cc.display(), def.name),
        )?;
        // Linked against the guest's libcares itself (its symbols may need a newer glibc
        // than this machine's: the guest's glibc resolves them).
        run(
            Command::new(&cc)
                .args(["-O2", "-Wl,--allow-shlib-undefined"])
                .args(&link_flags)
                .arg("-I")
                .arg(cares_dev_root.join("usr/include"))
                .arg("-o")
                .arg(partial.join(PROGRAMS[1]))
                .arg(src.join("c-ares.c"))
                .arg(&libcares),
            &format!("{} (c-ares probe for {})", cc.display(), def.name),
        )?;
        let work = partial.join(".go");
        for (name, cgo) in [(PROGRAMS[2], false), (PROGRAMS[3], true)] {
            let mut cmd = Command::new(&go);
            cmd.args(["build", "-o"]).arg(partial.join(name)).arg(".").current_dir(src.join("go"));
            go_env(&mut cmd, &work, cgo);
            cmd.env("GOOS", "linux").env("GOARCH", arch.as_str()).env("CC", &cc);
            if !link_flags.is_empty() {
                cmd.env("CGO_CFLAGS", link_flags.join(" ")).env("CGO_LDFLAGS", link_flags.join(" "));
            }
            run(&mut cmd, &format!("go build ({name} for {})", def.name))?;
        }
        let _ = std::fs::remove_dir_all(&work);
        std::fs::write(partial.join("VERSIONS"), &versions)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        write_manifest(partial)
    })?;
    verified(&dir).map_err(anyhow::Error::msg)?;
    Ok(dir)
}

/// Why a resolver probe program is missing on FreeBSD targets: written beside the programs as
/// `PROGRAM.why`, which the agent reports as the probe's `unsupported` reason.
pub const FREEBSD_NOT_BUILT: [(&str, &str); 3] = [
    ("addrsel-resolve-musl", "musl does not run on FreeBSD"),
    (
        "addrsel-resolve-c-ares",
        "the c-ares probe must link FreeBSD's own libcares (the c-ares package), and FreeBSD's package site is unreachable from the build machine",
    ),
    (
        "addrsel-resolve-go-cgo",
        "a cgo build for FreeBSD needs FreeBSD's libc to link against (its base system is unreachable from the build machine)",
    ),
];

/// The programs for a FreeBSD target: Go's own resolver, cross-built with this machine's
/// golang-go (GOOS=freebsd, CGO_ENABLED=0: static, no FreeBSD library needed). The others
/// need FreeBSD's own libraries and are not built ([`FREEBSD_NOT_BUILT`]).
pub fn for_freebsd(arch: crate::arch::Arch, log: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let go = crate::tools::program("go", "golang-go", "the Go resolver probe is built with go")?;
    let go_version =
        String::from_utf8_lossy(&Command::new(&go).arg("version").output().context("cannot run go version")?.stdout)
            .trim()
            .to_string();
    let programs = [PROGRAMS[2]];
    let versions = format!(
        "target freebsd-{}
go {go_version}
",
        arch.as_str()
    );
    let key = cache::sha256_hex(inputs(&versions)?.as_bytes());
    let dir = cache::cache_dir().join("resolvers").join(format!("freebsd-{}-{}", arch.as_str(), &key[..16]));
    if dir.exists() {
        match verified_programs(&dir, &programs) {
            Ok(()) => return Ok(dir),
            Err(why) => {
                log(&format!("{why}; building the resolver probes again"));
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    log(&format!("cross-building the Go resolver probe for FreeBSD {} ({go_version})", arch.as_str()));
    cache::publish(&dir, |partial| {
        std::fs::create_dir_all(partial).with_context(|| format!("cannot create {}", partial.display()))?;
        let work = partial.join(".go");
        let mut cmd = Command::new(&go);
        cmd.args(["build", "-o"]).arg(partial.join(programs[0])).arg(".").current_dir(sources_dir().join("go"));
        go_env(&mut cmd, &work, false);
        cmd.env("GOOS", "freebsd").env("GOARCH", arch.as_str());
        run(&mut cmd, &format!("go build ({} for FreeBSD {})", programs[0], arch.as_str()))?;
        let _ = std::fs::remove_dir_all(&work);
        for (program, why) in FREEBSD_NOT_BUILT {
            std::fs::write(partial.join(format!("{program}.why")), why)
                .with_context(|| format!("cannot write {}", partial.display()))?;
        }
        std::fs::write(partial.join("VERSIONS"), &versions)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        write_manifest_of(partial, &programs)
    })?;
    verified_programs(&dir, &programs).map_err(anyhow::Error::msg)?;
    Ok(dir)
}

/// The files of a FreeBSD resolver directory that go into the payload (the programs and the
/// reasons for the missing ones), checked against the manifest first.
pub fn freebsd_payload_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>, u32)>> {
    verified_programs(dir, &[PROGRAMS[2]]).map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    let program = PROGRAMS[2];
    let data =
        std::fs::read(dir.join(program)).with_context(|| format!("cannot read {}", dir.join(program).display()))?;
    out.push((program.to_string(), data, 0o755));
    for (program, why) in FREEBSD_NOT_BUILT {
        out.push((format!("{program}.why"), why.as_bytes().to_vec(), 0o644));
    }
    Ok(out)
}

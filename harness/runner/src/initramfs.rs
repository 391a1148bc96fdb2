//! A Linux guest from Debian packages: the kernel, and an initramfs holding the agent as
//! `/init`, exactly the shared libraries it and `ip` need (their ELF dependencies), the
//! release's glibc with its NSS files module, busybox for the console-login variant, and the
//! kernel modules with their dependencies. The base archive is cached; each run appends a
//! small archive with its input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use object::read::elf::{Dyn, ElfFile64, ProgramHeader};

use crate::cpio::{Entry, Writer};
use crate::debian::{self, ImageDef, Lock};
use crate::fetch;

/// The guest's kernel, unpacked from its package.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// What QEMU boots: for an x86 bzImage its payload decompressed on the host (see
    /// [`crate::bzimage`]), otherwise `vmlinuz` itself.
    pub boot_image: PathBuf,
    /// How `boot_image` came to be, for the run's log.
    pub boot_note: String,
    pub release: String,
    /// Its build configuration (`/boot/config-*`).
    pub config: String,
    /// `CONFIG_IPV6_MIP6=y`.
    pub mip6: bool,
    /// The vermagic its modules carry (what it accepts).
    pub vermagic: String,
    pub modules_dir: PathBuf,
}

/// A guest ready to boot.
#[derive(Clone, Debug)]
pub struct Guest {
    pub kernel: Kernel,
    /// The glibc version of the image (from the libc6 package).
    pub glibc: String,
    /// The cached base initramfs.
    pub base: PathBuf,
}

/// A file system view of the unpacked packages, paths normalised to /usr (merged /usr).
struct Tree {
    /// path (no leading '/') -> host file or symlink
    nodes: BTreeMap<String, Node>,
}

#[derive(Clone, Debug)]
enum Node {
    File(PathBuf),
    Symlink(String),
}

fn usrmerge(path: &str) -> String {
    for top in ["bin/", "sbin/", "lib/", "lib64/"] {
        if let Some(rest) = path.strip_prefix(top) {
            return format!("usr/{top}{rest}");
        }
    }
    path.to_string()
}

impl Tree {
    fn new() -> Self {
        Tree { nodes: BTreeMap::new() }
    }

    fn add_unpacked(&mut self, root: &Path) {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let Ok(meta) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                let rel = p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                if meta.is_dir() {
                    stack.push(p);
                } else if meta.file_type().is_symlink() {
                    if let Ok(t) = std::fs::read_link(&p) {
                        self.nodes.insert(usrmerge(&rel), Node::Symlink(t.to_string_lossy().into_owned()));
                    }
                } else {
                    self.nodes.insert(usrmerge(&rel), Node::File(p));
                }
            }
        }
    }

    /// Follows symlinks (absolute or relative); returns every path visited and the file.
    fn resolve(&self, path: &str) -> Option<(Vec<String>, PathBuf)> {
        let mut path = usrmerge(path.trim_start_matches('/'));
        let mut visited = Vec::new();
        for _ in 0..16 {
            visited.push(path.clone());
            match self.nodes.get(&path)? {
                Node::File(f) => return Some((visited, f.clone())),
                Node::Symlink(t) => {
                    path = if let Some(abs) = t.strip_prefix('/') {
                        usrmerge(abs)
                    } else {
                        let parent =
                            Path::new(&path).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                        normalize(&format!("{parent}/{t}"))
                    };
                }
            }
        }
        None
    }

    fn find_lib(&self, name: &str, dirs: &[String]) -> Option<String> {
        dirs.iter().map(|d| format!("{d}/{name}")).find(|p| self.resolve(p).is_some())
    }
}

fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    usrmerge(&parts.join("/"))
}

/// PT_INTERP and DT_NEEDED of a 64-bit ELF file.
pub fn elf_needs(data: &[u8]) -> Result<(Option<String>, Vec<String>), String> {
    let elf = ElfFile64::<object::Endianness>::parse(data).map_err(|e| e.to_string())?;
    let endian = elf.endian();
    let mut interp = None;
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) == object::elf::PT_INTERP {
            let bytes = ph.data(endian, data).map_err(|_| "bad PT_INTERP")?;
            interp = Some(String::from_utf8_lossy(bytes.split(|&b| b == 0).next().unwrap_or(&[])).into_owned());
        }
    }
    let mut needed = Vec::new();
    let sections = elf.elf_section_table();
    if let Some((dyns, link)) = sections.dynamic(endian, data).map_err(|e| e.to_string())? {
        let strings = sections.strings(endian, data, link).map_err(|e| e.to_string())?;
        for d in dyns {
            if d.d_tag(endian) == object::elf::DT_NEEDED {
                let name = strings.get(d.d_val(endian) as u32).map_err(|_| "bad DT_NEEDED")?;
                needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok((interp, needed))
}

fn triplet(arch: &str) -> &'static str {
    match arch {
        "arm64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    }
}

/// The `depends=` field of a module's `.modinfo` section.
pub fn module_depends(ko: &[u8]) -> Result<Vec<String>, String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(ko).map_err(|e| e.to_string())?;
    let info = file.section_by_name(".modinfo").ok_or("no .modinfo section")?;
    let data = info.data().map_err(|e| e.to_string())?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.strip_prefix("depends=").map(String::from))
        .flat_map(|d| d.split(',').filter(|x| !x.is_empty()).map(String::from).collect::<Vec<_>>())
        .collect())
}

/// The modules to load, dependencies first, as paths under lib/modules/<release>. Debian's
/// packages ship no modules.dep (depmod makes it at install time), so the dependencies come
/// from each module's own `.modinfo`.
fn module_order(modules_dir: &Path, wanted: &[String]) -> Result<Vec<String>, String> {
    let key = |path: &str| -> String {
        let base = path.rsplit('/').next().unwrap_or(path);
        base.trim_end_matches(".xz").trim_end_matches(".zst").trim_end_matches(".ko").replace('-', "_")
    };
    let builtin: BTreeSet<String> =
        std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default().lines().map(key).collect();
    let mut index: BTreeMap<String, String> = BTreeMap::new();
    let mut stack = vec![modules_dir.join("kernel")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(modules_dir).expect("under dir").to_string_lossy().into_owned();
                index.insert(key(&rel), rel);
            }
        }
    }
    fn visit(
        name: &str,
        index: &BTreeMap<String, String>,
        builtin: &BTreeSet<String>,
        dir: &Path,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if builtin.contains(name) || depth > 32 {
            return Ok(());
        }
        let rel =
            index.get(name).ok_or_else(|| format!("kernel module {name} is neither built in nor in the package"))?;
        if order.contains(rel) {
            return Ok(());
        }
        for d in module_depends(&read_module(&dir.join(rel))?).map_err(|e| format!("{rel}: {e}"))? {
            visit(&d.replace('-', "_"), index, builtin, dir, order, depth + 1)?;
        }
        order.push(rel.clone());
        Ok(())
    }
    let mut order = Vec::new();
    for w in wanted {
        visit(&w.replace('-', "_"), &index, &builtin, modules_dir, &mut order, 0)?;
    }
    Ok(order)
}

fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&data[..]), &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    } else {
        Ok(data)
    }
}

/// /etc for the guest: the files scenarios bind private copies over must exist, root may log
/// in on the console without a password (console-login variant).
const ETC: &[(&str, &str)] = &[
    ("etc/passwd", "root::0:0:root:/root:/bin/sh\n"),
    ("etc/group", "root:x:0:\n"),
    ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
    ("etc/host.conf", "multi on\n"),
    ("etc/nsswitch.conf", "hosts: files\n"),
    ("etc/gai.conf", ""),
    ("etc/hostname", "addrsel\n"),
];

const BUSYBOX_APPLETS: &[&str] =
    &["sh", "getty", "login", "poweroff", "cat", "ls", "mount", "echo", "sleep", "mkdir", "tar"];

fn is_kernel_image(def: &ImageDef, name: &str) -> bool {
    name.starts_with("linux-image-") && name != def.kernel
}

/// The image's kernel (downloaded, verified and unpacked once).
pub fn kernel(def: &ImageDef, lock: &Lock, progress: &dyn Fn(&str)) -> Result<Kernel, String> {
    let image: Vec<_> = lock.package.iter().filter(|p| is_kernel_image(def, &p.name)).cloned().collect();
    let (p, deb) = debian::fetch_packages(&image, progress)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("the lock has no kernel image package")?;
    let kroot = crate::deb::unpack(&deb, &p.sha256, &fetch::cache_dir().join("unpacked"))?;
    let boot = kroot.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .ok_or("no vmlinuz in the kernel package")?;
    let release = vmlinuz.file_name().expect("file").to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let config =
        std::fs::read_to_string(boot.join(format!("config-{release}"))).map_err(|e| format!("kernel config: {e}"))?;
    let mip6 = config.lines().any(|l| l == "CONFIG_IPV6_MIP6=y");
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| kroot.join(d).join(&release))
        .find(|d| d.exists())
        .ok_or("no modules directory in the kernel package")?;
    let veth = module_order(&modules_dir, &["veth".to_string()])?;
    let any = veth.first().ok_or("the kernel has no veth module")?;
    let vermagic = crate::linux_kmod::kernel_vermagic(&read_module(&modules_dir.join(any))?)
        .ok_or_else(|| format!("{any} has no vermagic"))?;
    let (boot_image, boot_note) = match def.arch.as_str() {
        "amd64" => match crate::bzimage::vmlinux(&vmlinuz) {
            Ok(elf) => (elf, "vmlinux decompressed on the host, PVH entry".to_string()),
            Err(e) => (vmlinuz.clone(), format!("bzImage (not decompressed on the host: {e})")),
        },
        _ => (vmlinuz.clone(), "the package's kernel image".to_string()),
    };
    Ok(Kernel { vmlinuz, boot_image, boot_note, release, config, mip6, vermagic, modules_dir })
}

/// Builds (or takes from the cache) the image's kernel and base initramfs.
pub fn prepare(def: &ImageDef, lock: &Lock, agent: &Path, progress: &dyn Fn(&str)) -> Result<Guest, String> {
    let kernel = kernel(def, lock, progress)?;
    // Headers are for building the test module, not for the guest.
    let wanted: Vec<_> = lock
        .package
        .iter()
        .filter(|p| !p.name.starts_with("linux-headers-") && !is_kernel_image(def, &p.name))
        .cloned()
        .collect();
    let pkgs = debian::fetch_packages(&wanted, progress).map_err(|e| e.to_string())?;
    let unpack_dir = fetch::cache_dir().join("unpacked");
    std::fs::create_dir_all(&unpack_dir).map_err(|e| e.to_string())?;
    fetch::clean_stale_partials(&unpack_dir);
    let mut tree = Tree::new();
    let mut glibc = String::new();
    for (p, deb) in &pkgs {
        let root = crate::deb::unpack(deb, &p.sha256, &unpack_dir)?;
        if p.name == "libc6" {
            glibc = p.version.split('-').next().unwrap_or("").to_string();
        }
        tree.add_unpacked(&root);
    }
    let release = kernel.release.clone();
    let modules_dir = kernel.modules_dir.clone();

    let agent_bytes = std::fs::read(agent).map_err(|e| format!("{}: {e}", agent.display()))?;
    let key = fetch::sha256_hex(
        format!(
            "v2 {} {} {} {}",
            fetch::sha256_hex(toml::to_string(lock).unwrap_or_default().as_bytes()),
            fetch::sha256_hex(&agent_bytes),
            def.modules.join(","),
            release
        )
        .as_bytes(),
    );
    let base = fetch::cache_dir().join("initramfs").join(format!("{}-{key}.cpio", def.name));
    let order = module_order(&modules_dir, &def.modules)?;
    let guest = Guest { kernel, glibc, base: base.clone() };
    if base.exists() {
        return Ok(guest);
    }
    progress("building the initramfs");
    let lib_dirs = vec![format!("usr/lib/{}", triplet(&def.arch)), "usr/lib".to_string(), "usr/lib64".to_string()];
    // What goes in: (path in guest, host file) and symlinks.
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let include = |tree: &Tree,
                   path: &str,
                   files: &mut BTreeMap<String, PathBuf>,
                   links: &mut BTreeMap<String, String>|
     -> Result<PathBuf, String> {
        let (visited, file) = tree.resolve(path).ok_or_else(|| format!("{path} is not in any locked package"))?;
        for w in visited.windows(2) {
            links.insert(w[0].clone(), format!("/{}", w[1]));
        }
        files.insert(visited.last().expect("one").clone(), file.clone());
        Ok(file)
    };
    let mut elf_queue: Vec<(String, Vec<u8>)> = vec![("init".into(), agent_bytes.clone())];
    for tool in ["usr/bin/ip", "usr/sbin/ip"] {
        if tree.resolve(tool).is_some() {
            let f = include(&tree, tool, &mut files, &mut links)?;
            elf_queue.push((tool.into(), std::fs::read(&f).map_err(|e| e.to_string())?));
        }
    }
    if !files.keys().any(|k| k.ends_with("/ip")) {
        return Err("iproute2's ip is not in the locked packages".into());
    }
    include(&tree, "usr/bin/busybox", &mut files, &mut links)?;
    // getaddrinfo loads the files NSS module at run time (built into libc from 2.41).
    if let Some(p) = tree.find_lib("libnss_files.so.2", &lib_dirs) {
        let f = include(&tree, &p, &mut files, &mut links)?;
        elf_queue.push((p, std::fs::read(&f).map_err(|e| e.to_string())?));
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    while let Some((who, data)) = elf_queue.pop() {
        let (interp, needed) = elf_needs(&data).map_err(|e| format!("{who}: {e}"))?;
        if let Some(i) = interp
            && done.insert(i.clone())
        {
            include(&tree, &i, &mut files, &mut links).map_err(|e| format!("{who} needs {i}: {e}"))?;
        }
        for lib in needed {
            if !done.insert(lib.clone()) {
                continue;
            }
            let path = tree
                .find_lib(&lib, &lib_dirs)
                .ok_or_else(|| format!("{who} needs {lib}, which no locked package has"))?;
            let f = include(&tree, &path, &mut files, &mut links)?;
            elf_queue.push((path, std::fs::read(&f).map_err(|e| e.to_string())?));
        }
    }
    let mut w = Writer::new();
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
        "etc",
        "etc/addrsel",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "boot",
    ] {
        w.add(Entry::Dir(d));
    }
    for (l, t) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        w.add(Entry::Symlink { path: l, target: t });
    }
    w.add(Entry::CharDev { path: "dev/console", major: 5, minor: 1 });
    let module_paths: Vec<String> =
        order.iter().map(|m| format!("usr/lib/modules/{release}/{}", m.trim_end_matches(".xz"))).collect();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for p in files.keys().chain(links.keys()).chain(&module_paths) {
        let mut acc = String::new();
        for part in Path::new(p).parent().into_iter().flat_map(|x| x.iter()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(&part.to_string_lossy());
            dirs.insert(acc.clone());
        }
    }
    for d in &dirs {
        w.add(Entry::Dir(d));
    }
    w.add(Entry::File { path: "init", data: &agent_bytes, executable: true });
    for (p, src) in &files {
        let data = std::fs::read(src).map_err(|e| e.to_string())?;
        w.add(Entry::File { path: p, data: &data, executable: true });
    }
    for (p, t) in &links {
        w.add(Entry::Symlink { path: p, target: t });
    }
    for a in BUSYBOX_APPLETS {
        w.add(Entry::Symlink { path: &format!("usr/bin/{a}"), target: "busybox" });
    }
    let mut load = String::new();
    for (m, dest) in order.iter().zip(&module_paths) {
        w.add(Entry::File { path: dest, data: &read_module(&modules_dir.join(m))?, executable: false });
        load.push_str(&format!("/{dest}\n"));
    }
    w.add(Entry::File { path: "etc/addrsel/modules", data: load.as_bytes(), executable: false });
    for (p, content) in ETC {
        w.add(Entry::File { path: p, data: content.as_bytes(), executable: false });
    }
    w.add(Entry::File {
        path: &format!("boot/config-{release}"),
        data: guest.kernel.config.as_bytes(),
        executable: false,
    });
    let bytes = w.finish();
    std::fs::create_dir_all(base.parent().expect("dir")).map_err(|e| e.to_string())?;
    let partial = base.with_extension(format!("partial.{}", std::process::id()));
    std::fs::write(&partial, &bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &base).map_err(|e| e.to_string())?;
    Ok(guest)
}

/// Where a boot's test module goes in the guest.
pub const KMOD_PATH: &str = "etc/addrsel/addrsel_kmod.ko";

/// The per-run archive: the agent's input, and the test module when there is one (the init
/// loads it after the image's modules).
pub fn run_archive(input_json: &[u8], kmod: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::new();
    w.add(Entry::File { path: "etc/addrsel/input.json", data: input_json, executable: false });
    let listed = format!("/{KMOD_PATH}\n");
    if let Some(ko) = kmod {
        w.add(Entry::File { path: KMOD_PATH, data: ko, executable: false });
        w.add(Entry::File { path: "etc/addrsel/kmod", data: listed.as_bytes(), executable: false });
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn usrmerge_paths() {
        assert_eq!(super::usrmerge("lib/x86_64-linux-gnu/libc.so.6"), "usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(super::usrmerge("usr/bin/ip"), "usr/bin/ip");
        assert_eq!(super::normalize("usr/lib/x86_64-linux-gnu/../../../lib/x/y"), "usr/lib/x/y");
    }

    #[test]
    fn elf_needs_of_this_test_binary() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let (interp, needed) = super::elf_needs(&exe).unwrap();
        assert!(interp.unwrap().contains("ld-linux"));
        assert!(needed.iter().any(|n| n.starts_with("libc.so")));
    }
}

//! A Linux guest from Debian packages: the kernel, and an initramfs holding the agent as
//! `/init`, exactly the shared libraries it and `ip` need (their ELF dependencies), the
//! release's glibc with its NSS files module, busybox for the console-login variant, and the
//! kernel modules with their dependencies. The base archive is cached; each run appends a
//! small archive with its input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use object::read::elf::{Dyn, ElfFile64, ProgramHeader};

use anyhow::{Context as _, bail};

use crate::arch::Arch;
use crate::cache;
use crate::linux::image::{ImageDef, Lock};
use crate::linux::kernel::{Kernel, KernelFiles, is_kernel_file_package, kernel_vermagic};
use crate::vm::cpio::{Entry, Writer};

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
pub fn elf_needs(data: &[u8]) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let elf = ElfFile64::<object::Endianness>::parse(data)?;
    let endian = elf.endian();
    let mut interp = None;
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) == object::elf::PT_INTERP {
            let bytes = ph.data(endian, data).map_err(|_| anyhow::anyhow!("bad PT_INTERP"))?;
            interp = Some(String::from_utf8_lossy(bytes.split(|&b| b == 0).next().unwrap_or(&[])).into_owned());
        }
    }
    let mut needed = Vec::new();
    let sections = elf.elf_section_table();
    if let Some((dyns, link)) = sections.dynamic(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        for d in dyns {
            if d.d_tag(endian) == object::elf::DT_NEEDED {
                let name = strings.get(d.d_val(endian) as u32).map_err(|_| anyhow::anyhow!("bad DT_NEEDED"))?;
                needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok((interp, needed))
}

/// The `depends=` field of a module's `.modinfo` section.
pub fn module_depends(ko: &[u8]) -> anyhow::Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(ko)?;
    let info = file.section_by_name(".modinfo").context("no .modinfo section")?;
    let data = info.data()?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.strip_prefix("depends=").map(String::from))
        .flat_map(|d| d.split(',').filter(|x| !x.is_empty()).map(String::from).collect::<Vec<_>>())
        .collect())
}

/// The modules to load, dependencies first, as paths under lib/modules/<release>. Debian's
/// packages ship no modules.dep (depmod makes it at install time), so the dependencies come
/// from each module's own `.modinfo`.
fn module_order(modules_dir: &Path, wanted: &[String]) -> anyhow::Result<Vec<String>> {
    let key = |path: &str| -> String {
        let base = path.rsplit('/').next().unwrap_or(path);
        base.trim_end_matches(".xz").trim_end_matches(".zst").trim_end_matches(".ko").replace('-', "_")
    };
    let builtin: BTreeSet<String> =
        std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default().lines().map(key).collect();
    let mut index: BTreeMap<String, String> = BTreeMap::new();
    let mut stack = vec![modules_dir.join("kernel")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?.flatten() {
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
    ) -> anyhow::Result<()> {
        if builtin.contains(name) || depth > 32 {
            return Ok(());
        }
        let rel =
            index.get(name).with_context(|| format!("kernel module {name} is neither built in nor in the package"))?;
        if order.contains(rel) {
            return Ok(());
        }
        for d in module_depends(&read_module(&dir.join(rel))?).with_context(|| format!("kernel module {rel}"))? {
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

fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&data[..]), &mut out)?;
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
    ("etc/resolv.conf", ""),
    ("etc/hostname", "addrsel\n"),
];

const BUSYBOX_APPLETS: &[&str] =
    &["sh", "getty", "login", "poweroff", "cat", "ls", "mount", "echo", "sleep", "mkdir", "tar"];

/// The image's kernel (downloaded, verified and unpacked once).
pub fn kernel(def: &ImageDef, lock: &Lock, progress: &dyn Fn(&str)) -> anyhow::Result<Kernel> {
    let kroot = kernel_root(def, lock, progress)?;
    let files = KernelFiles::find(&kroot)?;
    let (vmlinuz, release, config_path) = (files.vmlinuz, files.release, files.config);
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read the kernel config {}", config_path.display()))?;
    let mip6 = config.lines().any(|l| l == "CONFIG_IPV6_MIP6=y");
    let modules_dir = files.modules_dir;
    let veth = module_order(&modules_dir, &["veth".to_string()])?;
    let any = veth.first().context("the kernel has no veth module")?;
    let vermagic =
        kernel_vermagic(&read_module(&modules_dir.join(any))?).with_context(|| format!("{any} has no vermagic"))?;
    let (boot_image, boot_note) = match def.arch {
        Arch::Amd64 => match crate::linux::bzimage::vmlinux(&vmlinuz, progress) {
            Ok(elf) => (elf, "vmlinux decompressed on the host, PVH entry".to_string()),
            Err(e) => (vmlinuz.clone(), format!("bzImage (not decompressed on the host: {e:#})")),
        },
        Arch::Arm64 => (vmlinuz.clone(), "the package's kernel image".to_string()),
    };
    Ok(Kernel { vmlinuz, boot_image, boot_note, release, config, mip6, vermagic, modules_dir })
}

/// The kernel's packages (one `linux-image-*` up to Debian's 6.x; from 7.x its files are split
/// into `linux-binary-*`, `linux-modules-*` and `linux-base-*`), unpacked into one tree.
pub fn kernel_root(def: &ImageDef, lock: &Lock, progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    if let Some(custom) = &def.custom {
        return Ok(custom.root.clone());
    }
    let packages: Vec<_> = lock.package.iter().filter(|p| is_kernel_file_package(def, &p.name)).cloned().collect();
    if packages.is_empty() {
        anyhow::bail!("the lock of {} has no kernel image package", def.name);
    }
    crate::linux::packages::kernel_tree(&def.name, &packages, progress)
}

/// Whether `name` is among a kernel's loadable modules (or built in).
pub fn has_module(modules_dir: &Path, name: &str) -> bool {
    module_order(modules_dir, &[name.to_string()]).is_ok()
}

/// What goes into the base initramfs besides the agent: (path in the guest, host file) and
/// symlinks (path, target).
#[derive(Default)]
struct Contents {
    files: BTreeMap<String, PathBuf>,
    links: BTreeMap<String, String>,
}

impl Contents {
    /// Adds `path` and every symlink on the way to the file it names; returns the host file.
    fn include(&mut self, tree: &Tree, path: &str) -> anyhow::Result<PathBuf> {
        let (visited, file) = tree.resolve(path).with_context(|| format!("{path} is not in any locked package"))?;
        for w in visited.windows(2) {
            self.links.insert(w[0].clone(), format!("/{}", w[1]));
        }
        self.files.insert(visited.last().expect("one").clone(), file.clone());
        Ok(file)
    }
}

/// The image's userland packages (not the kernel or its headers), verified and unpacked, as
/// one tree; and the glibc version of its libc6.
fn userland(def: &ImageDef, lock: &Lock, progress: &dyn Fn(&str)) -> anyhow::Result<(Tree, String)> {
    let wanted: Vec<_> = lock
        .package
        .iter()
        .filter(|p| !p.name.starts_with("linux-headers-") && !is_kernel_file_package(def, &p.name))
        .cloned()
        .collect();
    let pkgs = crate::linux::packages::fetch_packages(&wanted, progress)?;
    let unpack_dir = cache::cache_dir().join("unpacked");
    std::fs::create_dir_all(&unpack_dir).with_context(|| format!("cannot create {}", unpack_dir.display()))?;
    cache::clean_stale_partials(&unpack_dir);
    let mut tree = Tree::new();
    let mut glibc = String::new();
    for (p, deb) in &pkgs {
        let root = crate::linux::deb::unpack(deb, &p.sha256, &unpack_dir)?;
        if p.name == "libc6" {
            glibc = p.version.split('-').next().unwrap_or("").to_string();
        }
        tree.add_unpacked(&root);
    }
    Ok((tree, glibc))
}

/// The agent, `ip`, busybox and glibc's files NSS module, with exactly the loader and shared
/// libraries they need (their ELF dependencies, transitively).
fn programs_and_libraries(tree: &Tree, arch: Arch, agent: &[u8], resolvers: &Path) -> anyhow::Result<Contents> {
    let lib_dirs = vec![format!("usr/lib/{}", arch.gnu_triplet()), "usr/lib".to_string(), "usr/lib64".to_string()];
    let read = |f: &Path| std::fs::read(f).with_context(|| format!("cannot read {}", f.display()));
    let mut c = Contents::default();
    let mut elf_queue: Vec<(String, Vec<u8>)> = vec![("init".into(), agent.to_vec())];
    // The resolver probes, with the libraries they load (the guest's libcares and glibc).
    for name in crate::resolvers::PROGRAMS {
        let host = resolvers.join(name);
        let guest = format!("{}/{name}", RESOLVER_DIR.trim_start_matches('/'));
        elf_queue.push((guest.clone(), read(&host)?));
        c.files.insert(guest, host);
    }
    for tool in ["usr/bin/ip", "usr/sbin/ip"] {
        if tree.resolve(tool).is_some() {
            let f = c.include(tree, tool)?;
            elf_queue.push((tool.into(), read(&f)?));
        }
    }
    if !c.files.keys().any(|k| k.ends_with("/ip")) {
        bail!("iproute2's ip is not in the locked packages");
    }
    c.include(tree, "usr/bin/busybox")?;
    // getaddrinfo loads the files NSS module at run time (built into libc from 2.41).
    if let Some(p) = tree.find_lib("libnss_files.so.2", &lib_dirs) {
        let f = c.include(tree, &p)?;
        elf_queue.push((p, read(&f)?));
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    while let Some((who, data)) = elf_queue.pop() {
        let (interp, needed) = elf_needs(&data).with_context(|| format!("{who} is not a readable ELF file"))?;
        if let Some(i) = interp.filter(|i| done.insert(i.clone())) {
            c.include(tree, &i).with_context(|| format!("{who} needs {i}"))?;
        }
        for lib in needed {
            if !done.insert(lib.clone()) {
                continue;
            }
            let path = tree
                .find_lib(&lib, &lib_dirs)
                .with_context(|| format!("{who} needs {lib}, which no locked package has"))?;
            let f = c.include(tree, &path)?;
            elf_queue.push((path, read(&f)?));
        }
    }
    Ok(c)
}

/// The base archive: directories, the agent as /init, the programs and libraries, busybox's
/// applets, the kernel modules in load order with the list the init reads, /etc and the
/// kernel's config.
fn base_archive(c: &Contents, agent: &[u8], kernel: &Kernel, modules: &[String]) -> anyhow::Result<Vec<u8>> {
    let release = &kernel.release;
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
        modules.iter().map(|m| format!("usr/lib/modules/{release}/{}", m.trim_end_matches(".xz"))).collect();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for p in c.files.keys().chain(c.links.keys()).chain(&module_paths) {
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
    w.add(Entry::File { path: "init", data: agent, executable: true });
    for (p, src) in &c.files {
        let data = std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
        w.add(Entry::File { path: p, data: &data, executable: true });
    }
    for (p, t) in &c.links {
        w.add(Entry::Symlink { path: p, target: t });
    }
    for a in BUSYBOX_APPLETS {
        w.add(Entry::Symlink { path: &format!("usr/bin/{a}"), target: "busybox" });
    }
    let mut load = String::new();
    for (m, dest) in modules.iter().zip(&module_paths) {
        w.add(Entry::File { path: dest, data: &read_module(&kernel.modules_dir.join(m))?, executable: false });
        load.push_str(&format!("/{dest}\n"));
    }
    w.add(Entry::File { path: "etc/addrsel/modules", data: load.as_bytes(), executable: false });
    for (p, content) in ETC {
        w.add(Entry::File { path: p, data: content.as_bytes(), executable: false });
    }
    w.add(Entry::File { path: &format!("boot/config-{release}"), data: kernel.config.as_bytes(), executable: false });
    Ok(w.finish())
}

/// Where the resolver probe programs are in the guest (the agent's `resolver_dir`).
pub const RESOLVER_DIR: &str = "/usr/lib/addrsel/resolvers";

/// Builds (or takes from the cache, checked against the sha256 recorded when it was built)
/// the image's kernel and base initramfs.
pub fn prepare(def: &ImageDef, lock: &Lock, agent: &Path, progress: &dyn Fn(&str)) -> anyhow::Result<Guest> {
    let kernel = kernel(def, lock, progress)?;
    let (tree, glibc) = userland(def, lock, progress)?;
    let agent_bytes = std::fs::read(agent).with_context(|| format!("cannot read the agent {}", agent.display()))?;
    let resolvers = crate::resolvers::for_image(def, lock, progress)?;
    let resolvers_manifest = std::fs::read(resolvers.join("SHA256SUMS"))
        .with_context(|| format!("cannot read {}/SHA256SUMS", resolvers.display()))?;
    let key = cache::sha256_hex(
        format!(
            "v2 {} {} {} {} {} {} {}",
            cache::sha256_hex(&resolvers_manifest),
            cache::sha256_hex(toml::to_string(lock).unwrap_or_default().as_bytes()),
            // /etc's files are in the key: a file added there must not be served from an
            // older archive that lacks it.
            cache::sha256_hex(format!("{ETC:?}").as_bytes()),
            cache::sha256_hex(&agent_bytes),
            def.modules.join(","),
            // The kernel's tree is named by its packages' (or files') checksums: a rebuilt
            // kernel with the same release gets its own modules.
            kernel.release,
            kernel.modules_dir.display()
        )
        .as_bytes(),
    );
    let base = cache::cache_dir().join("initramfs").join(format!("{}-{key}.cpio", def.name));
    let modules = module_order(&kernel.modules_dir, &def.modules)?;
    if !cache::intact(&base, progress) {
        progress("building the initramfs");
        let contents = programs_and_libraries(&tree, def.arch, &agent_bytes, &resolvers)?;
        let bytes = base_archive(&contents, &agent_bytes, &kernel, &modules)?;
        cache::publish(&base, |partial| {
            std::fs::write(partial, &bytes).with_context(|| format!("cannot write {}", partial.display()))
        })?;
    }
    Ok(Guest { kernel, glibc, base })
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

//! `cargo xtask image`: the guest images, their pinned lock files and the download cache.

use addrsel_runner::freebsd::{image as freebsd_image, module_build as freebsd_kmod};
use addrsel_runner::linux::image::{self as debian, Lock};
use addrsel_runner::linux::packages;

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Re-resolve the lock files: Debian from the releases' signed indexes (needs gpgv and
    /// the Debian archive keyring), FreeBSD from the release's CHECKSUM.SHA256 and MANIFEST
    /// over HTTPS.
    #[arg(long)]
    update: bool,
    /// Download and verify everything locked into the cache (so later runs work offline).
    #[arg(long)]
    fetch: bool,
    /// Only these images (default: all of images/linux and images/freebsd).
    names: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut defs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(debian::images_dir())?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        match debian::load_image(&p) {
            Ok(d) => defs.push(d),
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(exit::BAD_INPUT);
            }
        }
    }
    if !args.names.is_empty() {
        defs.retain(|d| args.names.contains(&d.name));
    }
    let progress = |m: &str| eprintln!("  {m}");
    for def in &defs {
        if args.update {
            eprintln!("{}: resolving from the signed indexes", def.name);
            let before = debian::load_lock(def).ok();
            match packages::resolve_lock(def, &progress) {
                Ok(lock) => {
                    let path = debian::write_lock(def, &lock)?;
                    if let Some(change) = before.as_ref().and_then(|b| what_changed(def, b, &lock)) {
                        println!("{}: {change}", def.name);
                    }
                    let kernel =
                        lock.package.iter().find(|p| p.name.starts_with("linux-image-") && p.name != def.kernel);
                    println!(
                        "{}: {} packages and a {}-package module build root locked in {}{}",
                        def.name,
                        lock.package.len(),
                        lock.build_root.len(),
                        path.display(),
                        kernel.map_or(String::new(), |k| format!(" (kernel {} {})", k.name, k.version))
                    );
                }
                Err(e) => {
                    eprintln!("error: {}: {e:#}", def.name);
                    return Ok(exit::NOT_RUN);
                }
            }
        }
        match debian::load_lock(def) {
            Ok(lock) => {
                let all: Vec<_> = lock.package.iter().chain(&lock.build_root).cloned().collect();
                if args.fetch
                    && let Err(e) = packages::fetch_packages(&all, &progress)
                {
                    eprintln!("error: {}: {e}", def.name);
                    return Ok(exit::NOT_RUN);
                }
                let size = |ps: &[debian::LockedPackage]| ps.iter().map(|p| p.size).sum::<u64>() >> 20;
                println!(
                    "{:<24} {} packages pinned, {} MB; module build root {} packages, {} MB: {}",
                    def.name,
                    lock.package.len(),
                    size(&lock.package),
                    lock.build_root.len(),
                    size(&lock.build_root),
                    def.description
                );
            }
            Err(e) => println!("{:<24} no lock: {e:#}", def.name),
        }
    }
    let mut status = exit::OK;
    for def in freebsd_image::all()?.iter().filter(|d| args.names.is_empty() || args.names.contains(&d.name)) {
        if let Err(e) = freebsd(def, &args, &progress) {
            eprintln!("error: {}: {e:#}", def.name);
            status = exit::NOT_RUN;
        }
    }
    Ok(status)
}

fn freebsd(def: &freebsd_image::ImageDef, args: &Args, progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    if args.update {
        eprintln!("{}: pinning from {}", def.name, def.image_dir);
        let lock = freebsd_image::resolve_lock(def, progress)?;
        let path = freebsd_image::write_lock(def, &lock)?;
        println!("{}: {} pinned in {}", def.name, lock.disk.name, path.display());
    }
    match freebsd_image::load_lock(def)? {
        Some(lock) => {
            if args.fetch {
                freebsd_image::disk(&lock, progress)?;
                freebsd_kmod::sysroot(&lock, progress)?;
                freebsd_kmod::kernel_sources(&lock, progress)?;
            }
            println!("{:<24} {} pinned: {}", def.name, lock.disk.name, def.description);
        }
        None => println!(
            "{:<24} no lock yet (`cargo xtask image --update {}` pins it from {}): {}",
            def.name, def.name, def.image_dir, def.description
        ),
    }
    Ok(())
}

/// What moved in a re-resolved lock: the kernel's and glibc's versions (what the snapshots
/// of the target will show as changes to review).
fn what_changed(def: &debian::ImageDef, before: &Lock, after: &Lock) -> Option<String> {
    let version = |lock: &Lock, wanted: &dyn Fn(&str) -> bool| {
        lock.package.iter().find(|p| wanted(&p.name)).map(|p| format!("{} {}", p.name, p.version))
    };
    let kernel = |n: &str| n.starts_with("linux-image-") && n != def.kernel;
    let libc = |n: &str| n == "libc6";
    let mut changes = Vec::new();
    for (what, wanted) in [("kernel", &kernel as &dyn Fn(&str) -> bool), ("glibc", &libc)] {
        let (b, a) = (version(before, wanted), version(after, wanted));
        if b != a {
            changes.push(format!(
                "{what}: {} -> {}",
                b.unwrap_or_else(|| "none".into()),
                a.unwrap_or_else(|| "none".into())
            ));
        }
    }
    let moved = after.package.iter().filter(|p| !before.package.iter().any(|q| q.sha256 == p.sha256)).count();
    if changes.is_empty() && moved == 0 {
        return None;
    }
    Some(format!(
        "{}{moved} of {} packages changed; review the snapshot changes the next matrix run shows",
        if changes.is_empty() { String::new() } else { format!("{}; ", changes.join("; ")) },
        after.package.len()
    ))
}

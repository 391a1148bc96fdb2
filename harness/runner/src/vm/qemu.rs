//! Booting guests under QEMU: acceleration that is proven to work, command lines built as
//! data, a console watcher that spots panics as they happen, deadlines, and a process that
//! cannot outlive the run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::arch::Arch;
use crate::process::{KillOnDrop, die_with_parent};
use crate::vm::console::{Console, Waited, panic_marker};

/// The results channel of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The second serial port (ttyS1): no driver to load on x86.
    Serial,
    /// A virtio-serial port on PCI.
    Virtio,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn parse(word: &str) -> Option<Accel> {
        match word {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Everything that decides a QEMU command line.
#[derive(Clone, Debug)]
pub struct Spec {
    pub binary: String,
    pub machine: String,
    pub cpu: String,
    pub memory_mb: u32,
    pub accel: Accel,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// UEFI/BIOS firmware (`-bios`).
    pub firmware: Option<PathBuf>,
    /// Disks: (path, format, read-only snapshot).
    pub disks: Vec<(PathBuf, String, bool)>,
    /// Where the agent's results go: a host file behind a second serial port or a virtio-serial
    /// port named `addrsel.results`.
    pub results: Option<(PathBuf, Channel)>,
    /// User-mode networking (FreeBSD guests ignore it unless asked).
    pub extra: Vec<String>,
}

/// The argv (without the binary). The serial console is QEMU's stdio.
pub fn args(s: &Spec) -> Vec<String> {
    let mut a: Vec<String> = vec!["-machine".into(), format!("{},accel={}", s.machine, s.accel.word())];
    let cpu = if s.accel == Accel::Kvm { "host" } else { s.cpu.as_str() };
    a.extend(["-cpu".into(), cpu.into(), "-m".into(), format!("{}M", s.memory_mb), "-smp".into(), "1".into()]);
    a.extend(
        ["-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none", "-serial", "stdio"].map(String::from),
    );
    if let Some(fw) = &s.firmware {
        a.extend(["-bios".into(), fw.display().to_string()]);
    }
    if let Some(k) = &s.kernel {
        a.extend(["-kernel".into(), k.display().to_string()]);
    }
    if let Some(i) = &s.initrd {
        a.extend(["-initrd".into(), i.display().to_string()]);
    }
    if let Some(c) = &s.append {
        a.extend(["-append".into(), c.clone()]);
    }
    for (i, (path, format, snapshot)) in s.disks.iter().enumerate() {
        a.extend([
            "-drive".into(),
            format!(
                "if=none,id=disk{i},file={},format={format}{}",
                path.display(),
                if *snapshot { ",snapshot=on" } else { "" }
            ),
            "-device".into(),
            format!("virtio-blk-pci,drive=disk{i}"),
        ]);
    }
    match &s.results {
        Some((r, Channel::Serial)) => a.extend(["-serial".into(), format!("file:{}", r.display())]),
        Some((r, Channel::Virtio)) => a.extend([
            "-device".into(),
            "virtio-serial-pci".into(),
            "-chardev".into(),
            format!("file,id=results,path={}", r.display()),
            "-device".into(),
            "virtserialport,chardev=results,name=addrsel.results".into(),
        ]),
        None => {}
    }
    a.extend(s.extra.iter().cloned());
    a
}

/// Which acceleration a guest of `arch` gets: `forced` (the matrix's `--accel`) when given;
/// otherwise KVM when the guest is native and a probe guest proves KVM works, else TCG. The
/// reason comes with it.
pub fn accel_for(arch: Arch, forced: Option<Accel>, dir: &Path) -> anyhow::Result<(Accel, String)> {
    let native = Arch::host() == Some(arch);
    match forced {
        Some(Accel::Kvm) if native => Ok((Accel::Kvm, "forced".into())),
        Some(Accel::Kvm) => bail!("KVM was asked for, but a {arch} guest cannot use KVM on {}", std::env::consts::ARCH),
        Some(Accel::Tcg) => Ok((Accel::Tcg, "forced".into())),
        None if !native => Ok((Accel::Tcg, "other architecture".into())),
        None => match kvm_works(dir) {
            Ok(()) => Ok((Accel::Kvm, "KVM probe guest ran".into())),
            Err(why) => Ok((Accel::Tcg, why)),
        },
    }
}

/// A multiboot (a.out kludge) kernel that writes 0x31 to an isa-debug-exit port: booted the
/// way real guests boot (firmware, option ROM, protected mode), QEMU exits with status 99.
fn probe_kernel() -> Vec<u8> {
    const MAGIC: u32 = 0x1bad_b002;
    const FLAGS: u32 = 0x0001_0000;
    const LOAD: u32 = 0x0010_0000;
    let mut k = Vec::new();
    for word in [MAGIC, FLAGS, 0u32.wrapping_sub(MAGIC.wrapping_add(FLAGS)), LOAD, LOAD, 0, 0, LOAD + 32] {
        k.extend_from_slice(&word.to_le_bytes());
    }
    // mov al, 0x31 ; out 0xf4, al ; hlt ; jmp $
    k.extend_from_slice(&[0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe]);
    k
}

/// How long a working KVM may take to run the probe guest (TCG needs about 0.1 s).
const KVM_PROBE_DEADLINE: Duration = Duration::from_millis(1500);

/// The probe guest's command line: the tiny multiboot kernel that exits QEMU with status 99
/// (through isa-debug-exit) once it runs.
fn probe_args(accel: &str, kernel: &Path) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["-machine".into(), format!("q35,accel={accel}").into()];
    if accel == "kvm" {
        a.extend(["-cpu".into(), "host".into()]);
    }
    for x in ["-m", "64", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none", "-kernel"] {
        a.push(x.into());
    }
    a.push(kernel.into());
    a.extend(["-device".into(), "isa-debug-exit,iobase=0xf4,iosize=0x04".into()]);
    a
}

/// Whether KVM really runs guests here: `/dev/kvm` opening is not enough (on some machines
/// guests hang or the CPU model is refused), so a probe guest with the CPU model real boots
/// use must run to its exit within a short deadline. Computed once per process; `Err` is why
/// not (a reason kept as text: the answer is shared by every guest of the run).
pub fn kvm_works(dir: &Path) -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    if let Some(why) = KVM_BROKE.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        return Err(why);
    }
    ANSWER.get_or_init(|| probe_kvm(dir).map_err(|e| format!("{e:#}"))).clone()
}

/// Set when a real guest failed under KVM although the probe guest ran (seen on machines
/// with broken nested virtualisation: the probe's few instructions run, a kernel hits
/// "KVM internal error ... emulation failure"): every later guest of the run uses TCG.
static KVM_BROKE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Whether a boot under KVM ended the way broken KVM ends it: QEMU reporting a KVM error,
/// or a guest that printed nothing at all. Returns what was seen.
pub fn kvm_failure(ended: &Ended, console_text: &str) -> Option<String> {
    match ended {
        Ended::Exited { stderr, .. } if stderr.contains("KVM") => {
            Some(stderr.lines().take(2).collect::<Vec<_>>().join(" "))
        }
        Ended::Deadline { .. } if console_text.trim().is_empty() => {
            Some("the guest printed nothing under KVM".to_string())
        }
        _ => None,
    }
}

/// Records that KVM failed a real guest (see [`kvm_failure`]).
pub fn note_kvm_failure(why: &str) {
    let mut broke = KVM_BROKE.lock().unwrap_or_else(|p| p.into_inner());
    broke.get_or_insert_with(|| format!("a guest failed under KVM although the probe ran ({why})"));
}

fn probe_kvm(dir: &Path) -> anyhow::Result<()> {
    if Arch::host() != Some(Arch::Amd64) {
        bail!("KVM probing is implemented for x86_64 hosts (this is {})", std::env::consts::ARCH);
    }
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").context("/dev/kvm")?;
    let qemu = crate::tools::find_program(Arch::Amd64.qemu().0)?;
    let kernel = dir.join("kvm-probe.mb");
    std::fs::write(&kernel, probe_kernel()).with_context(|| format!("cannot write {}", kernel.display()))?;
    let mut cmd = Command::new(qemu);
    cmd.args(probe_args("kvm", &kernel)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let child = cmd.spawn().context("cannot start the KVM probe guest")?;
    let mut guard = KillOnDrop(child);
    let start = Instant::now();
    let result = loop {
        match guard.0.try_wait() {
            Ok(Some(status)) if status.code() == Some(99) => break Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = guard.0.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let first = err.lines().next().unwrap_or("").trim().to_string();
                break Err(anyhow::anyhow!("a KVM probe guest failed ({status}: {first})"));
            }
            Ok(None) if start.elapsed() > KVM_PROBE_DEADLINE => {
                break Err(anyhow::anyhow!(
                    "a KVM probe guest did not finish within {} ms (KVM is present but does not work well here)",
                    KVM_PROBE_DEADLINE.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(e.into()),
        }
    };
    drop(guard);
    let _ = std::fs::remove_file(&kernel);
    result
}

/// How a boot ended.
#[derive(Debug)]
pub enum Ended {
    /// QEMU exited by itself: the guest powered off (status 0), or QEMU failed or was
    /// killed (`how` says which, `stderr` is what QEMU printed).
    Exited {
        status: Option<i32>,
        how: String,
        stderr: String,
    },
    Panic {
        marker: &'static str,
        last_lines: String,
    },
    Deadline {
        seconds: u64,
        last_lines: String,
    },
    /// The run was interrupted by this signal; QEMU was stopped.
    Interrupted(i32),
}

/// A running guest.
pub struct Vm {
    pub guard: KillOnDrop,
    pub console: Console,
    pub started: Instant,
    /// Where QEMU's own messages go.
    pub stderr: PathBuf,
}

impl Vm {
    /// Starts QEMU; the console goes to `console_log`, QEMU's own messages to the same path
    /// with `.qemu-stderr` appended.
    pub fn start(binary: &Path, spec: &Spec, console_log: &Path, stdin_piped: bool) -> anyhow::Result<Vm> {
        let mut cmd = Command::new(binary);
        cmd.args(args(spec)).stdout(Stdio::piped());
        cmd.stdin(if stdin_piped { Stdio::piped() } else { Stdio::null() });
        let log = std::fs::File::create(console_log)
            .with_context(|| format!("cannot create the console log {}", console_log.display()))?;
        let stderr_path = stderr_path(console_log);
        let stderr =
            std::fs::File::create(&stderr_path).with_context(|| format!("cannot create {}", stderr_path.display()))?;
        cmd.stderr(stderr);
        die_with_parent(&mut cmd);
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let console = Console::spawn(stdout, log);
        Ok(Vm { guard: KillOnDrop(child), console, started, stderr: stderr_path })
    }

    /// What QEMU said when it stopped running the guest without exiting: a KVM internal error
    /// leaves the process alive with the guest paused, so waits ask for this too.
    pub fn stalled(&self) -> Option<String> {
        let stderr = std::fs::read_to_string(&self.stderr).ok()?;
        stderr.contains("KVM internal error").then(|| stderr.lines().take(2).collect::<Vec<_>>().join(" "))
    }

    /// Waits for `f` to find something on the console, in short slices, giving up early when
    /// QEMU has stalled the guest ([`Vm::stalled`]).
    pub fn wait_console<T>(
        &self,
        deadline: Instant,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> (Waited<T>, Option<String>) {
        loop {
            let slice = deadline.min(Instant::now() + Duration::from_millis(250));
            match self.console.wait_until(slice, &mut f) {
                Waited::TimedOut if Instant::now() < deadline => {
                    if let Some(why) = self.stalled() {
                        return (Waited::Closed, Some(why));
                    }
                }
                other => return (other, None),
            }
        }
    }

    /// Types a line on the serial console.
    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.guard.0.stdin.as_mut().context("the console has no input")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .context("cannot type on the guest's console")
    }

    /// Waits for QEMU to exit, watching for panics, until the deadline; kills it otherwise.
    pub fn wait(&mut self, deadline: Duration) -> Ended {
        let end = self.started + deadline;
        loop {
            if let Ok(Some(status)) = self.guard.0.try_wait() {
                if let Some(sig) = crate::interrupt::requested() {
                    return Ended::Interrupted(sig);
                }
                // Let the console reader drain what was left.
                let _ = self.console.wait_until(Instant::now() + Duration::from_millis(200), |_| None::<()>);
                if let Some(marker) = panic_marker(&self.console.text()) {
                    return Ended::Panic { marker, last_lines: self.console.panic_context() };
                }
                let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                    (Some(0), _) => "QEMU exited normally".to_string(),
                    (Some(code), _) => format!("QEMU exited with status {code}"),
                    (None, Some(sig)) => format!("QEMU was killed by signal {sig}"),
                    (None, None) => format!("QEMU ended: {status}"),
                };
                let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default().trim().to_string();
                return Ended::Exited { status: status.code(), how, stderr };
            }
            if let Some(marker) = panic_marker(&self.console.text()) {
                // Give the guest a moment to print the rest of the panic, then stop it.
                let _ = self.console.wait_until(Instant::now() + Duration::from_millis(300), |_| None::<()>);
                let _ = self.guard.0.kill();
                return Ended::Panic { marker, last_lines: self.console.panic_context() };
            }
            if let Some(sig) = crate::interrupt::requested() {
                let _ = self.guard.0.kill();
                return Ended::Interrupted(sig);
            }
            if let Some(why) = self.stalled() {
                let _ = self.guard.0.kill();
                return Ended::Exited { status: None, how: "QEMU stopped the guest".into(), stderr: why };
            }
            if Instant::now() >= end {
                let _ = self.guard.0.kill();
                return Ended::Deadline { seconds: deadline.as_secs(), last_lines: self.console.last_lines(25) };
            }
            let _ = self.console.wait_until(Instant::now() + Duration::from_millis(20), |_| None::<()>);
        }
    }
}

/// `<console log>.qemu-stderr`.
fn stderr_path(console_log: &Path) -> PathBuf {
    let mut p = console_log.as_os_str().to_owned();
    p.push(".qemu-stderr");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe kernel really runs under QEMU's emulator (TCG), so a KVM failure can only
    /// be KVM's.
    #[test]
    fn probe_kernel_runs_under_tcg() {
        let qemu = crate::tools::qemu(Arch::Amd64).unwrap_or_else(|e| panic!("{e:#}"));
        let dir = std::env::temp_dir().join(format!("addrsel-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = dir.join("probe.mb");
        std::fs::write(&k, probe_kernel()).unwrap();
        let status = Command::new(qemu).args(probe_args("tcg", &k)).status().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(status.code(), Some(99));
    }

    #[test]
    fn panic_markers() {
        assert_eq!(
            panic_marker("x\n[ 1.2] Kernel panic - not syncing: Attempted to kill init!\n"),
            Some("Kernel panic - not syncing")
        );
        assert_eq!(panic_marker("panic: page fault\ncpuid = 0\n"), Some("panic: "));
        assert_eq!(panic_marker("KDB: stack backtrace:\n\ndb> "), Some("db> "));
        assert_eq!(panic_marker("kernel: oops=panic quiet\n"), None);
        assert_eq!(panic_marker("addrsel-init: running scenarios\n"), None);
    }
}

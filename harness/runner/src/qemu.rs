//! Booting guests under QEMU: acceleration that is proven to work, command lines built as
//! data, a console watcher that spots panics as they happen, deadlines, and a process that
//! cannot outlive the run.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// Which acceleration a guest of `arch` (amd64, arm64 or aarch64) gets: `ADDRSEL_ACCEL=kvm|tcg`
/// forces one; otherwise KVM when the guest is native and a probe guest proves KVM works, else
/// TCG. The reason comes with it.
pub fn accel_for(arch: &str, dir: &Path) -> Result<(Accel, String), String> {
    let native = matches!((arch, std::env::consts::ARCH), ("amd64", "x86_64") | ("arm64" | "aarch64", "aarch64"));
    match std::env::var("ADDRSEL_ACCEL").ok().as_deref() {
        Some("kvm") if native => Ok((Accel::Kvm, "forced".into())),
        Some("kvm") => {
            Err(format!("KVM was asked for, but a {arch} guest cannot use KVM on {}", std::env::consts::ARCH))
        }
        Some("tcg") => Ok((Accel::Tcg, "forced".into())),
        Some(other) => Err(format!("ADDRSEL_ACCEL={other}: expected kvm or tcg")),
        None if !native => Ok((Accel::Tcg, "other architecture".into())),
        None => match kvm_works(dir) {
            Ok(()) => Ok((Accel::Kvm, "KVM probe guest ran".into())),
            Err(why) => Ok((Accel::Tcg, why)),
        },
    }
}

/// Where a QEMU binary is, or the command that installs it.
pub fn find_binary(name: &str) -> Result<PathBuf, String> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    let pkg = if name.ends_with("x86_64") { "qemu-system-x86" } else { "qemu-system-arm" };
    Err(format!("{name} is not installed (apt-get install {pkg})"))
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
/// use must run to its exit within a short deadline. Computed once per process.
pub fn kvm_works(dir: &Path) -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER.get_or_init(|| probe_kvm(dir)).clone()
}

fn probe_kvm(dir: &Path) -> Result<(), String> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!("KVM probing is implemented for x86_64 hosts (this is {})", std::env::consts::ARCH));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Err(format!("/dev/kvm: {e}"));
    }
    let qemu = find_binary("qemu-system-x86_64")?;
    let kernel = dir.join("kvm-probe.mb");
    std::fs::write(&kernel, probe_kernel()).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(qemu);
    cmd.args(probe_args("kvm", &kernel)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let child = cmd.spawn().map_err(|e| e.to_string())?;
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
                break Err(format!("a KVM probe guest failed ({status}: {first})"));
            }
            Ok(None) if start.elapsed() > KVM_PROBE_DEADLINE => {
                break Err(format!(
                    "a KVM probe guest did not finish within {} ms (KVM is present but does not work well here)",
                    KVM_PROBE_DEADLINE.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(e.to_string()),
        }
    };
    drop(guard);
    let _ = std::fs::remove_file(&kernel);
    result
}

/// Sends SIGKILL to the child when the thread that started it ends (also when this process
/// is killed), so QEMU never outlives the run.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl only affects the child about to exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Kills and reaps a child on drop, on every exit path.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct ConsoleState {
    text: String,
    closed: bool,
    /// (arrival time, text length after the chunk), to time what the guest printed.
    arrivals: Vec<(Instant, usize)>,
}

/// The serial console: everything the guest printed, logged to a file as it arrives.
#[derive(Clone)]
pub struct Console {
    shared: Arc<(Mutex<ConsoleState>, Condvar)>,
}

pub enum Waited<T> {
    Found(T),
    Closed,
    TimedOut,
}

impl Console {
    pub fn spawn(mut reader: impl Read + Send + 'static, mut log: std::fs::File) -> Console {
        let shared = Arc::new((Mutex::new(ConsoleState::default()), Condvar::new()));
        let s = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*s;
                let mut st = lock.lock().expect("console");
                if n == 0 {
                    st.closed = true;
                    cv.notify_all();
                    break;
                }
                let _ = log.write_all(&buf[..n]);
                st.text.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
                let len = st.text.len();
                st.arrivals.push((Instant::now(), len));
                cv.notify_all();
            }
        });
        Console { shared }
    }

    /// Waits until `f` finds something in the console text, the console closes, or the
    /// deadline passes.
    pub fn wait_until<T>(&self, deadline: Instant, mut f: impl FnMut(&str) -> Option<T>) -> Waited<T> {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().expect("console");
        loop {
            if let Some(t) = f(&st.text) {
                return Waited::Found(t);
            }
            if st.closed {
                return Waited::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Waited::TimedOut;
            }
            st = cv.wait_timeout(st, (deadline - now).min(Duration::from_millis(50))).expect("console").0;
        }
    }

    /// When `pattern` first arrived, measured from `start`.
    pub fn seen_after(&self, pattern: &str, start: Instant) -> Option<Duration> {
        let st = self.shared.0.lock().expect("console");
        let end = st.text.find(pattern)? + pattern.len();
        st.arrivals.iter().find(|(_, len)| *len >= end).map(|(t, _)| t.duration_since(start))
    }

    pub fn text(&self) -> String {
        self.shared.0.lock().expect("console").text.clone()
    }

    /// The lines around the first panic marker (what caused it and what followed), or the
    /// last lines when there is none.
    pub fn panic_context(&self) -> String {
        let t = self.text();
        let lines: Vec<&str> = t.lines().collect();
        let at = lines.iter().position(|l| panic_marker(l).is_some() || panic_marker(&format!("{l}\n")).is_some());
        match at {
            Some(i) => lines[i.saturating_sub(10)..(i + 20).min(lines.len())].join("\n"),
            None => lines[lines.len().saturating_sub(25)..].join("\n"),
        }
    }

    pub fn last_lines(&self, n: usize) -> String {
        let t = self.text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Signs of a dying guest kernel, Linux and FreeBSD.
pub fn panic_marker(text: &str) -> Option<&'static str> {
    const ANYWHERE: &[&str] =
        &["Kernel panic - not syncing", "BUG: kernel NULL pointer", "general protection fault", "KDB: enter: panic"];
    // FreeBSD's panic line and debugger prompt start a line.
    const LINE_START: &[&str] = &["panic: ", "db> ", "Oops: "];
    ANYWHERE
        .iter()
        .find(|m| text.contains(*m))
        .or_else(|| LINE_START.iter().find(|m| text.lines().any(|l| l.starts_with(*m))))
        .copied()
}

/// How a boot ended.
#[derive(Debug)]
pub enum Ended {
    /// QEMU exited by itself (the guest powered off).
    Exited {
        status: Option<i32>,
    },
    Panic {
        marker: &'static str,
        last_lines: String,
    },
    Deadline {
        seconds: u64,
        last_lines: String,
    },
}

/// A running guest.
pub struct Vm {
    pub guard: KillOnDrop,
    pub console: Console,
    pub started: Instant,
}

impl Vm {
    pub fn start(binary: &Path, spec: &Spec, console_log: &Path, stdin_piped: bool) -> Result<Vm, String> {
        let mut cmd = Command::new(binary);
        cmd.args(args(spec)).stdout(Stdio::piped());
        cmd.stdin(if stdin_piped { Stdio::piped() } else { Stdio::null() });
        let log = std::fs::File::create(console_log).map_err(|e| format!("{}: {e}", console_log.display()))?;
        cmd.stderr(log.try_clone().map_err(|e| e.to_string())?);
        die_with_parent(&mut cmd);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let console = Console::spawn(stdout, log);
        Ok(Vm { guard: KillOnDrop(child), console, started })
    }

    /// Types a line on the serial console.
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.guard.0.stdin.as_mut().ok_or("the console has no input")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .map_err(|e| e.to_string())
    }

    /// Waits for QEMU to exit, watching for panics, until the deadline; kills it otherwise.
    pub fn wait(&mut self, deadline: Duration) -> Ended {
        let end = self.started + deadline;
        loop {
            if let Ok(Some(status)) = self.guard.0.try_wait() {
                // Let the console reader drain what was left.
                let _ = self.console.wait_until(Instant::now() + Duration::from_millis(200), |_| None::<()>);
                if let Some(marker) = panic_marker(&self.console.text()) {
                    return Ended::Panic { marker, last_lines: self.console.panic_context() };
                }
                return Ended::Exited { status: status.code() };
            }
            if let Some(marker) = panic_marker(&self.console.text()) {
                // Give the guest a moment to print the rest of the panic, then stop it.
                let _ = self.console.wait_until(Instant::now() + Duration::from_millis(300), |_| None::<()>);
                let _ = self.guard.0.kill();
                return Ended::Panic { marker, last_lines: self.console.panic_context() };
            }
            if Instant::now() >= end {
                let _ = self.guard.0.kill();
                return Ended::Deadline { seconds: deadline.as_secs(), last_lines: self.console.last_lines(25) };
            }
            let _ = self.console.wait_until(Instant::now() + Duration::from_millis(20), |_| None::<()>);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe kernel really runs under QEMU's emulator (TCG), so a KVM failure can only
    /// be KVM's.
    #[test]
    fn probe_kernel_runs_under_tcg() {
        let qemu = crate::toolchain::qemu("qemu-system-x86_64").unwrap_or_else(|e| panic!("{e}"));
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

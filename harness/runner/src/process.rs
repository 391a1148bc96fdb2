//! Child processes that cannot outlive the run: killed and reaped on every exit path,
//! including panics, and killed by the kernel if this process dies first.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Sends SIGKILL to the child when the thread that started it ends (also when this process
/// is killed), so QEMU never outlives the run.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl/procctl only affect the child about to exec.
    unsafe {
        cmd.pre_exec(|| {
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            #[cfg(target_os = "freebsd")]
            {
                let mut signal: libc::c_int = libc::SIGKILL;
                libc::procctl(libc::P_PID, 0, libc::PROC_PDEATHSIG_CTL, (&raw mut signal).cast());
            }
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

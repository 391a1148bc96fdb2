//! Driving a guest through its serial console: wait for the login prompt, log in, run one
//! command whose output comes back framed (`@@ADDRSEL <crc> <json>`), power off. FreeBSD's
//! BASIC-CI images are driven this way; it is tested against the console-login variant of a
//! Linux guest.

use std::time::Instant;

use addrsel_model::protocol::{AgentMessage, FRAME_END, unframe};

use crate::vm::console::{Waited, panic_marker};
use crate::vm::qemu::{Ended, Vm};

/// What the guest's console looks like.
#[derive(Clone, Copy, Debug)]
pub struct Login {
    pub login_prompt: &'static str,
    pub user: &'static str,
    pub password_prompt: &'static str,
    /// The end of a root shell prompt.
    pub shell_prompt: &'static str,
    pub poweroff: &'static str,
}

/// busybox getty/login/sh in the Linux console-login variant.
pub const BUSYBOX: Login = Login {
    login_prompt: "login: ",
    user: "root",
    password_prompt: "Password:",
    shell_prompt: "# ",
    poweroff: "poweroff -f",
};

/// FreeBSD's getty/login and root's sh (BASIC-CI: root has an empty password).
pub const FREEBSD: Login = Login {
    login_prompt: "login: ",
    user: "root",
    password_prompt: "Password:",
    shell_prompt: "# ",
    poweroff: "shutdown -p now",
};

#[derive(Debug)]
pub enum DriveError {
    Interrupted(i32),
    Panic { marker: &'static str, last_lines: String },
    TimedOut { waiting_for: String, last_lines: String },
    Closed { waiting_for: String, last_lines: String },
}

impl std::error::Error for DriveError {}

impl std::fmt::Display for DriveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriveError::Interrupted(sig) => write!(f, "interrupted by {}", crate::interrupt::name(*sig)),
            DriveError::Panic { marker, last_lines } => {
                write!(f, "guest kernel panic (`{marker}`); last console lines:\n{last_lines}")
            }
            DriveError::TimedOut { waiting_for, last_lines } => {
                write!(f, "timed out waiting for {waiting_for}; last console lines:\n{last_lines}")
            }
            DriveError::Closed { waiting_for, last_lines } => {
                write!(f, "the guest went away while waiting for {waiting_for}; last console lines:\n{last_lines}")
            }
        }
    }
}

/// Waits for `what` to appear after byte `from`; returns the offset just past it. A panic
/// marker anywhere after `from` ends the wait at once.
fn expect(vm: &Vm, from: usize, what: &[&str], deadline: Instant, label: &str) -> Result<(usize, usize), DriveError> {
    let (found, stalled) = vm.wait_console(deadline, |text| {
        let tail = text.get(from..).unwrap_or("");
        if let Some(m) = panic_marker(tail) {
            return Some(Err(m));
        }
        what.iter()
            .enumerate()
            .filter_map(|(i, w)| tail.rfind(w).map(|p| (p, i, w.len())))
            .min()
            .map(|(p, i, len)| Ok((from + p + len, i)))
    });
    match found {
        Waited::Found(Ok(x)) => Ok(x),
        Waited::Found(Err(marker)) => Err(DriveError::Panic { marker, last_lines: vm.console.panic_context() }),
        Waited::TimedOut => {
            Err(DriveError::TimedOut { waiting_for: label.into(), last_lines: vm.console.last_lines(25) })
        }
        Waited::Closed => Err(DriveError::Closed {
            waiting_for: match stalled {
                Some(why) => format!("{label} (QEMU stopped the guest: {why})"),
                None => label.into(),
            },
            last_lines: vm.console.last_lines(25),
        }),
        Waited::Interrupted => Err(DriveError::Interrupted(crate::interrupt::requested().unwrap_or(libc::SIGINT))),
    }
}

/// Logs in as root, runs `command`, returns its framed messages, powers the guest off.
pub fn run_command(
    vm: &mut Vm,
    login: &Login,
    command: &str,
    deadline: Instant,
) -> Result<Vec<AgentMessage>, DriveError> {
    let (at, _) = expect(vm, 0, &[login.login_prompt], deadline, "the login prompt")?;
    vm.send(login.user)
        .map_err(|e| DriveError::Closed { waiting_for: format!("{e:#}"), last_lines: vm.console.last_lines(25) })?;
    let (mut at, which) =
        expect(vm, at, &[login.password_prompt, login.shell_prompt], deadline, "a password or shell prompt")?;
    if which == 0 {
        vm.send("")
            .map_err(|e| DriveError::Closed { waiting_for: format!("{e:#}"), last_lines: vm.console.last_lines(25) })?;
        at = expect(vm, at, &[login.shell_prompt], deadline, "the shell prompt")?.0;
    }
    let start = vm.console.text().len().max(at);
    vm.send(command)
        .map_err(|e| DriveError::Closed { waiting_for: format!("{e:#}"), last_lines: vm.console.last_lines(25) })?;
    // The end marker must be output, not the echo of the typed line (which does not hold it).
    let (end, _) = expect(vm, start, &[&format!("\n{FRAME_END}")], deadline, "the agent's results")?;
    let (messages, _, damaged) = unframe(vm.console.text().get(start..end).unwrap_or(""));
    if damaged > 0 {
        // A scenario whose frame was cut by console output shows as missing; say why.
        eprintln!("  console: {damaged} framed message(s) damaged by interleaved console output and dropped");
    }
    let _ = vm.send(login.poweroff);
    Ok(messages)
}

/// After `run_command`: waits for the guest to power off by itself.
pub fn wait_poweroff(vm: &mut Vm, deadline: Instant) -> Result<(), DriveError> {
    let left = deadline.saturating_duration_since(Instant::now());
    match vm.wait(left.max(std::time::Duration::from_secs(1))) {
        Ended::Exited { .. } => Ok(()),
        Ended::Panic { marker, last_lines } => Err(DriveError::Panic { marker, last_lines }),
        Ended::Deadline { last_lines, .. } => Err(DriveError::TimedOut { waiting_for: "power off".into(), last_lines }),
        Ended::Interrupted(sig) => Err(DriveError::Interrupted(sig)),
    }
}

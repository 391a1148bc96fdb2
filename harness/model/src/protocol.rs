//! What the runner sends the agent and what the agent answers, one JSON value per line.

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::results::Report;

/// The agent's input: every scenario of one target, run one after another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInput {
    /// The target name to put into every report.
    pub target: String,
    pub plans: Vec<Plan>,
    /// Also ask the test kernel module (when it is loaded) for every connect probe.
    #[serde(default)]
    pub kmod: bool,
    /// Where the resolver probe programs (`addrsel-resolve-musl`, ...) are on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver_dir: Option<String>,
}

/// Facts about the system the agent runs on, which the engine's profile depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub os: String,
    pub kernel: String,
    /// `uname -v`: Debian's carries the upstream version (`Debian 6.1.192-2`), which its
    /// release (`6.1.0-56-cloud-amd64`) does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    pub arch: String,
    /// glibc version (`gnu_get_libc_version`), if the agent is linked against glibc.
    pub glibc: Option<String>,
    /// `CONFIG_IPV6_MIP6` from the kernel's config, when the config could be read.
    pub mip6: Option<bool>,
    /// Where the kernel config came from (or why it could not be read).
    pub kernel_config: String,
    /// The test kernel module, when the run asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kmod: Option<KmodStatus>,
}

/// Whether the test kernel module can answer, and if not why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmodStatus {
    /// Loaded and its interface exists (its init ran).
    pub ready: bool,
    /// What was found: `/proc/net/addrsel answers`, `module loaded but its init did not run`, ...
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Facts(Facts),
    /// One scenario finished (or failed to set up).
    Scenario {
        report: Report,
        /// The plan step that failed and what it printed, if setup failed.
        setup_error: Option<String>,
        /// Wall time of setup + probes.
        millis: u64,
    },
    /// Everything ran; the agent exits next.
    Done,
}

/// Marks an agent message on a console shared with kernel and shell noise (FreeBSD guests,
/// the console-login variant): `@@ADDRSEL <crc32> <json>`, one per line.
pub const FRAME: &str = "@@ADDRSEL";
/// Printed after the last framed message.
pub const FRAME_END: &str = "@@ADDRSEL-END";

/// CRC-32 (IEEE), bit by bit: small and fast enough for a few kilobytes.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

pub fn frame(message: &AgentMessage) -> String {
    let json = serde_json::to_string(message).expect("serialisable");
    format!("{FRAME} {:08x} {json}", crc32(json.as_bytes()))
}

/// The framed messages found in console text, whether the end marker was seen, and how many
/// frames were damaged (checksum mismatch: the console interleaved something into them).
pub fn unframe(console: &str) -> (Vec<AgentMessage>, bool, usize) {
    let mut out = Vec::new();
    let mut damaged = 0;
    let mut ended = false;
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        let Some(pos) = line.find(FRAME) else { continue };
        let rest = &line[pos..];
        if rest.starts_with(FRAME_END) {
            ended = true;
            continue;
        }
        let mut parts = rest[FRAME.len()..].trim_start().splitn(2, ' ');
        let (Some(crc), Some(json)) = (parts.next(), parts.next()) else { continue };
        let ok = u32::from_str_radix(crc, 16).is_ok_and(|c| c == crc32(json.as_bytes()));
        match (ok, serde_json::from_str::<AgentMessage>(json)) {
            (true, Ok(m)) => out.push(m),
            _ => damaged += 1,
        }
    }
    (out, ended, damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn frames_survive_noise_and_damage_is_counted() {
        let m = AgentMessage::Done;
        let f = frame(&m);
        let console = format!(
            "login: root\r\n# /init run --framed\r\n[  3.1] random kernel line\r\n{f}\r\n{}\r\n{}\r\n",
            f.replace("done", "dxne"),
            FRAME_END
        );
        let (msgs, ended, damaged) = unframe(&console);
        assert_eq!(msgs, vec![m]);
        assert!(ended);
        assert_eq!(damaged, 1);
    }
}

//! `cargo xtask capture` inside a network and mount namespace set up as a real host
//! (addresses, routes, a gai.conf and /etc/hosts): the scenario it writes, run on the `host`
//! target, gives the live answers it recorded, also anonymized.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A host: a ULA and private IPv4 on eth0, default routes, a multipath route over eth0 and
/// eth1, a site label in gai.conf, and a dual-stack name in /etc/hosts.
const HOST: &str = r#"set -eu
ip link set lo up
ip link add eth0 type veth peer name p0
ip link set eth0 up; ip link set p0 up
ip addr add 10.0.0.50/24 dev eth0
ip addr add fd00:11:22::aa/64 dev eth0 nodad
ip addr add 2a01:4f8:c2c:8200::aa/64 dev eth0 nodad preferred_lft 0
ip route add default via 10.0.0.1
ip route add ::/0 via fd00:11:22::1
ip link add eth1 type veth peer name p1
ip link set eth1 up; ip link set p1 up
ip addr add 10.9.0.50/24 dev eth1
ip route add 198.51.100.0/24 nexthop via 10.0.0.1 dev eth0 nexthop via 10.9.0.1 dev eth1 weight 2
d=$(mktemp -d)
printf '127.0.0.1 localhost\n::1 localhost\n2a01:4f8:c2c:8101::1 server.example\n116.203.176.52 server.example\n' > $d/hosts
printf 'label fd00:11:22::/48 1\n' > $d/gai
mount --bind $d/hosts /etc/hosts
mount --bind $d/gai /etc/gai.conf
sleep 1
"$@"
"#;

fn capture(dir: &Path, extra: &[&str], out: &Path) {
    let script = dir.join("host.sh");
    std::fs::write(&script, HOST).unwrap();
    let o = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "sh"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "capture",
            "--connect",
            "2a01:4f8:c2c:8101::1",
            "--connect",
            "116.203.176.52",
            "--connect",
            "198.51.100.7",
            "--resolve",
            "server.example",
        ])
        .args(extra)
        .arg("-o")
        .arg(out)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

fn run_on_host(file: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["matrix", "--targets", "host", "--no-snapshots", "--scenarios"])
        .arg(file)
        .current_dir(repo())
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(!t.contains("DISAGREE") && !t.contains("NOT CHECKED"), "{t}");
    t
}

#[test]
fn a_captured_host_reproduces_its_live_answers() {
    let dir = std::env::temp_dir().join(format!("addrsel-test-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("captured.toml");
    capture(&dir, &[], &plain);
    let t = std::fs::read_to_string(&plain).unwrap();
    for part in [
        "\"10.0.0.50/24\"",
        "\"fd00:11:22::aa/64\"",
        "{ address = \"2a01:4f8:c2c:8200::aa/64\", deprecated = true }",
        "label fd00:11:22::/48 1",
        "\"server.example\" = [\"2a01:4f8:c2c:8101::1\", \"116.203.176.52\"]",
        "source = \"fd00:11:22::aa\"",
        "order = [\"2a01:4f8:c2c:8101::1\", \"116.203.176.52\"]",
        // The live answer is one path's source; the engine predicts both, which it is among.
        "nexthops = [{ via = \"10.0.0.1\", dev = \"eth0\" }, { via = \"10.9.0.1\", dev = \"eth1\", weight = 2 }]",
    ] {
        assert!(t.contains(part), "{part} missing:\n{t}");
    }
    run_on_host(&plain);

    let anon = dir.join("anonymized.toml");
    capture(&dir, &["--anonymize", "--seed", "42"], &anon);
    let a = std::fs::read_to_string(&anon).unwrap();
    for hidden in ["10.0.0.50", "10.9.0.1", "198.51.100", "fd00:11:22", "2a01:4f8", "116.203.176.52", "server.example"]
    {
        assert!(!a.contains(hidden), "{hidden} is still there:\n{a}");
    }
    assert!(a.contains("\"host-1.example\"") && a.contains("3fff:"), "{a}");
    run_on_host(&anon);
    std::fs::remove_dir_all(dir).unwrap();
}

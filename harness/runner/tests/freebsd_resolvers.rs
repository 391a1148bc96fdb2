//! The FreeBSD resolver probe: Go's own resolver cross-built for FreeBSD (it cannot run
//! here), checked as a file: a FreeBSD ELF executable for the target's machine, listed in
//! the manifest, with the reasons for the programs FreeBSD targets do not get.

use addrsel_runner::arch::Arch;
use addrsel_runner::resolvers;

#[test]
fn the_go_probe_is_a_freebsd_executable_for_each_architecture() {
    for (arch, machine) in [(Arch::Amd64, 62u16), (Arch::Arm64, 183u16)] {
        let dir = resolvers::for_freebsd(arch, &|m| eprintln!("{m}")).unwrap_or_else(|e| panic!("{e:#}"));
        let files = resolvers::freebsd_payload_files(&dir).unwrap_or_else(|e| panic!("{e:#}"));
        let (name, elf, mode) = &files[0];
        assert_eq!((name.as_str(), *mode), ("addrsel-resolve-go", 0o755));
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[7], 9, "{arch:?}: EI_OSABI is not FreeBSD");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), machine, "{arch:?}: e_machine");
        assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 2, "{arch:?}: not ET_EXEC (static)");
        let why: Vec<_> = files[1..].iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(why, ["addrsel-resolve-musl.why", "addrsel-resolve-c-ares.why", "addrsel-resolve-go-cgo.why"]);
        // A changed program is refused before it goes into a payload.
        let program = dir.join("addrsel-resolve-go");
        let original = std::fs::read(&program).unwrap();
        std::fs::write(&program, b"tampered").unwrap();
        let refused = resolvers::freebsd_payload_files(&dir);
        std::fs::write(&program, &original).unwrap();
        assert!(refused.is_err_and(|e| e.to_string().contains("does not match")));
    }
}

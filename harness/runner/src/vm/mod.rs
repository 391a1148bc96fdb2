//! What every guest shares: QEMU command lines and processes, the serial console, the
//! console driver that logs in and runs a command, and cpio archives.

pub mod console;
pub mod console_driver;
pub mod cpio;
pub mod qemu;

//! Linux guests from Debian packages: image definitions and locks, packages, the kernel,
//! the initramfs, the test module built with the kernel's own compiler, and the boot.

pub mod bzimage;
pub mod compiler;
pub mod custom_kernel;
pub mod deb;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod module_build;
pub mod packages;
pub mod sysroot;
pub mod vm;

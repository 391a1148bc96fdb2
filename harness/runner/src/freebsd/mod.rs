//! FreeBSD guests from the official BASIC-CI images: image pins and verified downloads, the
//! test module cross-built with clang and ld.lld, and the console-driven boot.

pub mod image;
pub mod module_build;
pub mod vm;

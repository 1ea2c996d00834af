//! Link the `ledge` binary with packed relative relocations (DT_RELR, glibc ≥ 2.36): a
//! position-independent binary of this size otherwise carries 1.5 MB of relocation records that
//! the dynamic loader reads at every start — resident memory on every device, for nothing.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

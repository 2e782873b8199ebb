//! Links the `victor` binary position-dependent (`-no-pie`) on Linux.
//!
//! Every `victor task ...` in a script is a new process, and for a position-independent
//! executable of this size the dynamic loader first applies some 90,000 relative relocations,
//! copying on write each page of data they touch: 3–4 ms of CPU before `main`, against 1.4 ms
//! linked this way (BENCHMARKS.md, "Client calls from scripts"). The cost is address-space
//! randomisation of the executable image itself; shared libraries, heap, stacks and mappings
//! stay randomised (SECURITY.md says so).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=victor=-no-pie");
    }
}

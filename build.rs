//! Embeds an rpath to libtorch's library directory (from torch-sys) so the binary and the tests
//! run without LD_LIBRARY_PATH. On another machine (the GPU host) LD_LIBRARY_PATH still wins.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

//! Build script of the app package: tauri-build reads `tauri.conf.json` (next to the root manifest) and the
//! capabilities in `src-tauri/capabilities/`, which is not where it looks by default.

fn main() {
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    println!("cargo:rerun-if-changed=tauri.conf.json");
    let attributes =
        tauri_build::Attributes::new().capabilities_path_pattern("src-tauri/capabilities/*.json");
    if let Err(error) = tauri_build::try_build(attributes) {
        panic!("tauri-build failed: {error:#}");
    }
}

//! Build script of the app package: tauri-build reads `tauri.conf.json` (next to the root manifest) and the
//! capabilities in `src-tauri/capabilities/`, which is not where it looks by default. The frontend must be
//! built first: `generate_context!` embeds `ui/dist`.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    println!("cargo:rerun-if-changed=tauri.conf.json");
    println!("cargo:rerun-if-changed=ui/dist");
    if !Path::new("ui/dist/index.html").is_file() {
        panic!(
            "ui/dist/index.html is missing: build the frontend first \
             (`cd ui && npm ci && npm run build`, or `bash scripts/test.sh`)"
        );
    }
    let attributes =
        tauri_build::Attributes::new().capabilities_path_pattern("src-tauri/capabilities/*.json");
    if let Err(error) = tauri_build::try_build(attributes) {
        panic!("tauri-build failed: {error:#}");
    }
}

//! The webview's rendering mode on Linux. Without a GPU render node (`/dev/dri/renderD*`), WebKitGTK's
//! accelerated compositing runs on Mesa's software GL (llvmpipe): on a 2-core VM every repaint of the
//! label grid then took ~250 ms, against ~60 ms in WebKitGTK's non-composited mode (`benches/ui.rs`,
//! docs/performance.md). So on such machines the app asks for the non-composited mode, unless the user set
//! `WEBKIT_DISABLE_COMPOSITING_MODE` themselves (their value always wins).

use std::path::Path;

/// The variable WebKitGTK reads.
pub const COMPOSITING_ENV: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Whether `dri` (normally `/dev/dri`) holds a GPU render node.
pub fn has_render_node(dri: &Path) -> bool {
    std::fs::read_dir(dri)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("renderD")))
        .unwrap_or(false)
}

/// Whether to turn compositing off: Linux, no render node, and the user left the variable alone.
pub fn disable_compositing(linux: bool, render_node: bool, user_set: bool) -> bool {
    linux && !render_node && !user_set
}

/// Applies the choice for this process; call first thing in `main`, before any thread or GTK starts.
pub fn choose_rendering_mode() {
    let linux = cfg!(target_os = "linux");
    let user_set = std::env::var_os(COMPOSITING_ENV).is_some();
    if disable_compositing(linux, has_render_node(Path::new("/dev/dri")), user_set) {
        // Single-threaded at this point: nothing else reads the environment yet.
        std::env::set_var(COMPOSITING_ENV, "1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_linux_without_a_render_node_and_without_the_users_setting() {
        assert!(disable_compositing(true, false, false));
        assert!(!disable_compositing(true, true, false), "a GPU composites");
        assert!(!disable_compositing(true, false, true), "the user's value wins");
        assert!(!disable_compositing(false, false, false), "not on macOS or Windows");
    }

    #[test]
    fn render_nodes_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_render_node(dir.path()));
        std::fs::write(dir.path().join("card0"), b"").unwrap();
        assert!(!has_render_node(dir.path()), "a card node alone is not a render node");
        std::fs::write(dir.path().join("renderD128"), b"").unwrap();
        assert!(has_render_node(dir.path()));
        assert!(!has_render_node(&dir.path().join("missing")));
    }
}

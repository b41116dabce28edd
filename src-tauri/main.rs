//! The `unisal-studio` desktop binary: everything lives in the library so tests can reach it.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    unisal_studio::run();
}

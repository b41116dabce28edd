//! The `unisal-studio` desktop binary: everything lives in the library so tests can reach it.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    // Training buffers stay on the heap between steps (see unisal_train::memory).
    unisal_train::memory::tune_allocator();
    unisal_studio::run();
}

//! The process allocator's settings for training on the CPU (glibc on Linux; a no-op elsewhere).
//!
//! A training step allocates and frees hundreds of activation and gradient buffers of 1-30 MB. glibc serves each
//! of those above its (dynamic) mmap threshold with a fresh `mmap` and returns it with `munmap`, so every step
//! pays the kernel's page faults and page clearing again: about a fifth of a small-CNN step on 2 cores (perf).
//! [`tune_allocator`] keeps blocks up to 32 MiB (glibc's largest mmap threshold) on the heap and stops it from
//! handing freed memory back after every step; [`release_memory`] hands it back when a round is over.

/// Called once at the start of a program that trains (the CLI, the app): blocks up to 32 MiB come from the heap,
/// and free heap memory is kept up to 1 GiB. Returns whether the allocator took the settings.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's malloc parameters; both values are in their documented ranges.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Hands free heap memory back to the system (after a round, so an idle app does not hold a round's peak).
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused memory at the top of the heap and in free chunks to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_takes_the_settings_on_linux_glibc() {
        let took = tune_allocator();
        assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")));
        // Memory still works, and trimming is harmless.
        let v = vec![1.0f32; 8 << 20];
        assert_eq!(v.iter().sum::<f32>(), (8 << 20) as f32);
        drop(v);
        release_memory();
    }
}

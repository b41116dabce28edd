//! With the `cuda` feature, compiles `cuda/*.cu` to PTX with nvcc (`$NVCC`, else `nvcc` on the PATH) for
//! `CUDA_COMPUTE_CAP` (e.g. 90; asked of `nvidia-smi` when unset): `elementwise.cu` into
//! `$OUT_DIR/unisal_kernels.ptx`, which `src/nn/cuda_kernels.rs` embeds, and `batchnorm.cu` into
//! `$OUT_DIR/unisal_bn.ptx`, which `src/nn/cuda_bn.rs` embeds. Without the feature it does nothing.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=cuda");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let cap = std::env::var("CUDA_COMPUTE_CAP").ok().or_else(query_compute_cap).unwrap_or_else(|| {
        panic!("feature `cuda`: set CUDA_COMPUTE_CAP (e.g. 90 for an H100) or make `nvidia-smi` available")
    });
    let cap: String = cap.chars().filter(char::is_ascii_digit).collect();
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for (source, ptx) in
        [("cuda/elementwise.cu", "unisal_kernels.ptx"), ("cuda/batchnorm.cu", "unisal_bn.ptx")]
    {
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", &format!("-arch=compute_{cap}"), source, "-o"])
            .arg(out_dir.join(ptx))
            .status()
            .unwrap_or_else(|e| panic!("feature `cuda`: cannot run {nvcc}: {e}"));
        assert!(status.success(), "feature `cuda`: {nvcc} failed on {source}");
    }
}

/// The first GPU's compute capability from `nvidia-smi` (e.g. "9.0" -> "90").
fn query_compute_cap() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.lines().next().map(|l| l.trim().replace('.', "")).filter(|c| !c.is_empty())
}

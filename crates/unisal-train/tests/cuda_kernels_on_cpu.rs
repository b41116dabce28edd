//! The kernels of `cuda/elementwise.cu` and `cuda/batchnorm.cu` run on the CPU, so that their arithmetic and
//! indexing are checked on every machine, not only on a lent GPU: the ReLU family in f32 and bf16 (both paths of
//! their 16-byte loads, and their tails), the per-parameter SGD kernels, the block op's parameter pack and SGD over
//! many parameters in one launch; the batch norm's forward and backward in f32 and bf16.
//!
//! Each `.cu` file is compiled whole with the host's C++ compiler after `tests/cuda_on_cpu/prelude.hpp`. That
//! prelude makes `__global__` and the other qualifiers nothing and `blockIdx`, `threadIdx`, `blockDim` and
//! `gridDim` globals, and gives the vector and bf16 types and conversions. `tests/cuda_on_cpu/checks*.cpp` then run
//! each kernel under a loop over a small grid, the tables laid out as `nn/kernel_tables.rs` lays them out, against
//! the arithmetic written out. Where no C++ compiler is installed, the test says so and passes (CI installs one:
//! `build-essential`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn compiler() -> Option<&'static str> {
    ["c++", "g++", "clang++"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Compiles `cu` (a file under `cuda/`) after the prelude and before `checks` (under `tests/cuda_on_cpu/`), runs it,
/// and expects "ok".
fn run_on_cpu(cu: &str, checks: &str) {
    let Some(cxx) = compiler() else {
        eprintln!("SKIPPED: no C++ compiler (c++, g++ or clang++) to run the CUDA kernels on the CPU");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let kernels = read(&format!("cuda/{cu}")).replace("#include <cuda_bf16.h>", "");
    let (prelude, check_code) =
        (read("tests/cuda_on_cpu/prelude.hpp"), read(&format!("tests/cuda_on_cpu/{checks}")));
    // A folder for each checks file: the tests run in parallel.
    let dir: PathBuf =
        std::env::temp_dir().join(format!("unisal-cuda-on-cpu-{}-{checks}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (source, exe) = (dir.join("kernels.cpp"), dir.join("kernels"));
    std::fs::write(&source, format!("{prelude}\n{kernels}\n\n{check_code}")).unwrap();
    let built = Command::new(cxx).args(["-std=c++17", "-O1", "-o"]).arg(&exe).arg(&source).output().unwrap();
    assert!(built.status.success(), "{cxx} failed:\n{}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(&exe).output().unwrap();
    let out = String::from_utf8_lossy(&ran.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ran.status.success() && out.trim() == "ok", "the kernels of {cu} on the CPU: {out}");
}

#[test]
fn the_cuda_kernels_compute_what_the_rust_side_expects() {
    run_on_cpu("elementwise.cu", "checks.cpp");
}

#[test]
fn the_batch_norm_kernels_match_the_arithmetic_in_f64() {
    run_on_cpu("batchnorm.cu", "checks_bn.cpp");
}

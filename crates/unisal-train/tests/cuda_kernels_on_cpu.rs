//! The table kernels of `cuda/elementwise.cu` (the block op's parameter pack, SGD over many parameters in one
//! launch) run on the CPU, so that their index arithmetic is checked on every machine, not only on a lent GPU.
//!
//! The kernels' own source is cut out of the `.cu` file and compiled with the host's C++ compiler. `__global__`
//! becomes nothing, and `blockIdx`, `threadIdx`, `blockDim` and `gridDim` become globals that a loop over the grid
//! sets. `tests/cuda_on_cpu/checks.cpp` then runs them with tables laid out as `nn/cuda_pack.rs` and
//! `nn/cuda_sgd.rs` lay them out, against the arithmetic written out. Where no C++ compiler is installed, the test
//! says so and passes (CI installs one: `build-essential`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The source of the kernel `name` in `src`: from its `extern "C" __global__` line to its closing brace.
fn kernel(src: &str, name: &str) -> String {
    let head = format!("extern \"C\" __global__ void {name}(");
    let start = src.find(&head).unwrap_or_else(|| panic!("kernel {name} not found in elementwise.cu"));
    let open = start + src[start..].find('{').expect("a body");
    let mut depth = 0usize;
    for (i, ch) in src[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return src[start..open + i + 1].replace("extern \"C\" ", "");
                }
            }
            _ => {}
        }
    }
    panic!("kernel {name}: unbalanced braces")
}

fn compiler() -> Option<&'static str> {
    ["c++", "g++", "clang++"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

#[test]
fn the_table_kernels_pack_and_step_as_the_rust_side_expects() {
    let Some(cxx) = compiler() else {
        eprintln!("SKIPPED: no C++ compiler (c++, g++ or clang++) to run the CUDA kernels on the CPU");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cu = std::fs::read_to_string(root.join("cuda/elementwise.cu")).expect("cuda/elementwise.cu");
    let checks = std::fs::read_to_string(root.join("tests/cuda_on_cpu/checks.cpp")).expect("checks.cpp");
    let prelude = "#define __global__\n#define __restrict__\nstruct D3 { unsigned long long x, y, z; };\n\
                   static D3 blockIdx, threadIdx, blockDim, gridDim;\n";
    let kernels = ["unisal_pack_f32", "unisal_sgd_multi_f32"].map(|k| kernel(&cu, k)).join("\n\n");
    let dir: PathBuf = std::env::temp_dir().join(format!("unisal-cuda-on-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (source, exe) = (dir.join("kernels.cpp"), dir.join("kernels"));
    std::fs::write(&source, format!("{prelude}\n{kernels}\n\n{checks}")).unwrap();
    let built = Command::new(cxx).args(["-std=c++17", "-O1", "-o"]).arg(&exe).arg(&source).output().unwrap();
    assert!(built.status.success(), "{cxx} failed:\n{}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(&exe).output().unwrap();
    let out = String::from_utf8_lossy(&ran.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ran.status.success() && out.trim() == "ok", "the kernels on the CPU: {out}");
}

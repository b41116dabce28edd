//! The entries of the tables that two kernels of `cuda/elementwise.cu` read: the block op's parameter pack
//! (`unisal_pack_f32`, `cuda_pack.rs`) and SGD over many parameters in one launch (`unisal_sgd_multi_f32`,
//! `cuda_sgd.rs`). They are pure functions, unit-tested on every machine. The kernels themselves run on the CPU with
//! tables of the same layout in `tests/cuda_kernels_on_cpu.rs`.

use candle_core::{Layout, Shape};

/// Words of an SGD entry: the weight's, the momentum buffer's (0: none) and the gradient's addresses; the count; the
/// weight's four dims and the gradient's four strides (read only for a strided gradient); the flags (1: strided
/// gradient; 2: the parameter's first step).
pub(crate) const SGD_WORDS: usize = 13;

/// Words of a pack entry: the source's address; the piece's offset in the pack; the count; for a weight packed
/// channels last its channels `C` and `kh * kw` (else 1 and 1); the channels-last flag.
pub(crate) const PACK_WORDS: usize = 6;

/// The SGD entry of a parameter at the addresses `[weight, buffer, gradient]` (each at its first value), the weight
/// of shape `weight` and the gradient laid out as `grad`: contiguous, or a 4-d view of the weight's shape read
/// through its strides (a channels-last weight's piece of the packed gradient, `packed_grads.rs`).
pub(crate) fn sgd_entry(
    [w, buf, g]: [u64; 3],
    weight: &Shape,
    grad: &Layout,
    first: bool,
) -> candle_core::Result<[u64; SGD_WORDS]> {
    if grad.shape() != weight {
        candle_core::bail!("sgd: a gradient of {:?} for a weight of {weight:?}", grad.shape());
    }
    let strided = !grad.is_contiguous();
    let (dims, strides) = match strided {
        false => ([1; 4], [0; 4]),
        true => {
            let (&[d0, d1, d2, d3], &[s0, s1, s2, s3]) = (weight.dims(), grad.stride()) else {
                candle_core::bail!("sgd: a strided gradient must be 4-d, got {:?}", grad.shape())
            };
            ([d0, d1, d2, d3], [s0, s1, s2, s3])
        }
    };
    let [d0, d1, d2, d3] = dims.map(|d| d as u64);
    let [s0, s1, s2, s3] = strides.map(|s| s as u64);
    let flags = u64::from(strided) | (u64::from(first) << 1);
    Ok([w, buf, g, weight.elem_count() as u64, d0, d1, d2, d3, s0, s1, s2, s3, flags])
}

/// The pack entry of a variable of shape `var` at the address `src` (its first value), placed at `at` in the pack,
/// as it is or, with `channels_last`, a 4-d weight `[O, C, kh, kw]` permuted to `[O, kh, kw, C]`.
pub(crate) fn pack_entry(
    src: u64,
    at: usize,
    var: &Shape,
    channels_last: bool,
) -> candle_core::Result<[u64; PACK_WORDS]> {
    let (c, kk) = match (channels_last, var.dims()) {
        (false, _) => (1, 1),
        (true, &[_, c, kh, kw]) => (c, kh * kw),
        (true, _) => candle_core::bail!("parameter pack: a channels-last piece must be 4-d, got {var:?}"),
    };
    Ok([src, at as u64, var.elem_count() as u64, c as u64, kk as u64, u64::from(channels_last)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::packed_grads::PackedVars;
    use candle_core::{DType, Device, Tensor, Var};

    #[test]
    fn a_channels_last_gradient_view_gives_the_strides_the_kernel_reads() {
        // The view `packed_grads.rs` makes of a [2, 3, 2, 2] weight's channels-last piece: strides [12, 1, 6, 3],
        // the same table tests/cuda_on_cpu/checks.cpp runs the kernel with.
        let w = Var::zeros((2, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let mut vars = PackedVars::default();
        vars.push(w.as_tensor(), 8, true).unwrap();
        let dp = Tensor::zeros(40, DType::F32, &Device::Cpu).unwrap();
        let (_, g) = vars.grads(&dp).unwrap().remove(0);
        let e = sgd_entry([1, 2, 3], w.shape(), g.layout(), true).unwrap();
        assert_eq!(g.layout().start_offset(), 8, "the caller adds the view's offset to the address");
        assert_eq!(e, [1, 2, 3, 24, 2, 3, 2, 2, 12, 1, 6, 3, 3]);
    }

    #[test]
    fn a_contiguous_gradient_is_read_in_order_and_a_mismatch_is_refused() {
        let shape = Shape::from(5);
        let e = sgd_entry([10, 0, 30], &shape, &Layout::contiguous_with_offset(5, 4), false).unwrap();
        assert_eq!(e, [10, 0, 30, 5, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
        assert!(sgd_entry([1, 2, 3], &shape, &Layout::contiguous(6), false).is_err());
        let strided_2d = Layout::contiguous((2, 3)).transpose(0, 1).unwrap();
        let err = sgd_entry([1, 2, 3], &Shape::from((3, 2)), &strided_2d, false).unwrap_err().to_string();
        assert!(err.contains("4-d"), "{err}");
    }

    #[test]
    fn pack_entries_give_channels_and_window_for_a_channels_last_weight() {
        let w = Shape::from((3, 5, 2, 3));
        assert_eq!(pack_entry(7, 8, &w, true).unwrap(), [7, 8, 90, 5, 6, 1]);
        assert_eq!(pack_entry(7, 104, &Shape::from(7), false).unwrap(), [7, 104, 7, 1, 1, 0]);
        assert!(pack_entry(7, 0, &Shape::from(7), true).is_err());
    }
}

//! The block op's parameter pack made in one CUDA launch (`unisal_pack_f32`, `cuda/elementwise.cu`): each
//! variable's values copied to its place in a new f32 variable, a channels-last weight permuted to `[O, k, k, C]`
//! on the way. Packing with candle ops cost a network some 200 kernels and 50 allocations a step: a concatenation
//! of each batch norm's gamma and beta, one copy per piece into the pack, a copy of the pack into a variable, and
//! under channels last a copy of each weight permuted. A table of the pieces' addresses, offsets and counts goes
//! to the device with the launch; the pack is a variable of its own, zero in its alignment gaps
//! (`nn/packed_grads.rs`).

use candle_core::cuda_backend::cudarc::driver::{PushKernelArg, SyncOnDrop};
use candle_core::{DType, Device, Tensor, Var};

use super::cuda_kernels::{address, launch_with, per_entry_config, upload_table, MAX_ENTRIES};
use super::kernel_tables::{pack_entry, PACK_WORDS};
use super::packed_grads::PackedVars;

/// A new f32 variable of `len` values on `device` holding the variables of `vars` at their places (f32, contiguous,
/// on `device`), zero elsewhere.
pub(crate) fn gather(vars: &PackedVars, len: usize, device: &Device) -> candle_core::Result<Tensor> {
    let pack = Var::zeros(len, DType::F32, device)?;
    let cuda = device.as_cuda_device()?.clone();
    let stream = cuda.cuda_stream();
    let entries: Vec<_> = vars.entries().collect();
    for (var, offset, _) in &entries {
        let ok = var.dtype() == DType::F32 && var.is_contiguous() && var.device().same_device(device);
        if !ok || offset + var.elem_count() > len {
            candle_core::bail!(
                "parameter pack: a piece of {:?} at {offset} does not fit {len} f32 values",
                var.shape()
            );
        }
    }
    let out = pack.as_tensor().storage_and_layout();
    let guards: Vec<_> = entries.iter().map(|(v, _, _)| v.storage_and_layout()).collect();
    for (part, guards) in entries.chunks(MAX_ENTRIES).zip(guards.chunks(MAX_ENTRIES)) {
        let mut table: Vec<u64> = Vec::with_capacity(part.len() * PACK_WORDS);
        let mut held: Vec<SyncOnDrop<'_>> = Vec::with_capacity(part.len());
        let mut longest = 0usize;
        for ((var, offset, channels_last), guard) in part.iter().zip(guards) {
            let src = address(guard, &stream, &mut held, "parameter pack")?;
            table.extend(pack_entry(src, *offset, var.shape(), *channels_last)?);
            longest = longest.max(var.elem_count());
        }
        let table = upload_table(&stream, &table, "parameter pack")?;
        let name = "unisal_pack_f32";
        let func = cuda.get_or_load_custom_func(name, "unisal_elementwise", super::cuda_kernels::PTX)?;
        let out_base = address(&out, &stream, &mut held, "parameter pack")?;
        let mut b = func.builder();
        b.arg(&table);
        b.arg(&out_base);
        let cfg = per_entry_config(longest, part.len());
        // SAFETY: the table holds, for each piece, the address of a variable's n contiguous f32 values and an offset
        // in the pack that leaves room for them (checked above); the pack and the variables outlive the kernel
        // (candle frees memory in stream order). The pack is written through its read guard's address, as the batch
        // norm writes its running statistics: nothing else holds it yet.
        unsafe { launch_with(name, &stream, b, cfg) }?;
        drop(held);
    }
    drop(out);
    Ok(pack.as_tensor().clone())
}

//! The block op's parameter gradients handed to the variables without candle's graph walk.
//!
//! The block op (`nn/blocks.rs`, `nn/cudnn/block.rs`) takes a network's block parameters packed into one tensor.
//! Packed inside the autograd graph, its gradient would walk back through the packing, and candle gives every edge of
//! that walk a zero-filled buffer and an add: the concatenation, each weight's flatten (and channels-last permute),
//! each batch norm's `(gamma, beta)` pair, each alignment gap. That is some 700 small kernels, as many allocations,
//! and about 1,100 tensors a ResNet-50 and step, all host work, which bounds the bf16 step.
//!
//! So the packed tensor is made outside the graph, as a variable of its own: a leaf, which keeps the op a node of the
//! graph even where its other input is the images (the stem inside the op), and whose gradient candle neither
//! allocates nor walks. The op's backward hands its packed gradient to this thread's pending list ([`hand_over`]).
//! [`backward`], used in place of `Tensor::backward`, then gives each variable its piece of it: a view, cast once
//! per pack to the variables' type. A channels-last weight's piece is permuted back to `[O, C, kh, kw]`.
//!
//! Gradients left uncollected are an error at the next optimiser step ([`ensure_collected`]), not a silent skip of
//! those parameters. `UNISAL_PACKED_GRADS=0` keeps the packing inside the graph, for comparisons.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use crate::error::{Result, TrainError};

/// Where each variable's values sit in a packed parameter tensor.
#[derive(Debug, Default)]
pub(crate) struct PackedVars {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    /// The variable's tensor (its id keys the gradient store).
    var: Tensor,
    /// Its first value's index in the packed tensor.
    offset: usize,
    /// Packed as `[O, kh, kw, C]` (a channels-last weight) rather than in the variable's `[O, C, kh, kw]` order.
    channels_last: bool,
}

impl PackedVars {
    /// Records that `var`'s values sit at `offset` in the packed tensor, in its own order or, with `channels_last`,
    /// as `[O, kh, kw, C]` (a 4-d weight).
    pub(crate) fn push(&mut self, var: &Tensor, offset: usize, channels_last: bool) -> Result<()> {
        if channels_last && var.rank() != 4 {
            return Err(TrainError::InvalidModel(format!(
                "packed parameters: a channels-last piece must be a 4-d weight, got {:?}",
                var.shape()
            )));
        }
        self.entries.push(Entry { var: var.clone(), offset, channels_last });
        Ok(())
    }

    /// How many variables are recorded.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Each variable's tensor, its offset and whether it is packed channels last, in the order recorded.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Tensor, usize, bool)> + '_ {
        self.entries.iter().map(|e| (&e.var, e.offset, e.channels_last))
    }

    /// Each variable with its gradient, a view of `dp` (the packed gradient, 1-d) cast to the variable's type.
    pub(crate) fn grads(&self, dp: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let mut cast: Option<Tensor> = None;
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let dt = e.var.dtype();
            let src = if dp.dtype() == dt {
                dp.clone()
            } else {
                match &cast {
                    Some(c) if c.dtype() == dt => c.clone(),
                    _ => {
                        let c = dp.to_dtype(dt)?;
                        cast = Some(c.clone());
                        c
                    }
                }
            };
            let n = e.var.elem_count();
            if e.offset + n > src.elem_count() {
                return Err(TrainError::InvalidModel(format!(
                    "packed parameters: a piece at {}..{} of a gradient of {} values",
                    e.offset,
                    e.offset + n,
                    src.elem_count()
                )));
            }
            let piece = src.narrow(0, e.offset, n)?;
            let g = if e.channels_last {
                let (o, c, kh, kw) = e.var.dims4()?;
                piece.reshape((o, kh, kw, c))?.permute((0, 3, 1, 2))?
            } else {
                piece.reshape(e.var.shape())?
            };
            out.push((e.var.clone(), g));
        }
        Ok(out)
    }
}

thread_local! {
    /// Packed gradients the block ops' backward passes on this thread handed over, not yet collected.
    static PENDING: RefCell<Vec<(Arc<PackedVars>, Tensor)>> = const { RefCell::new(Vec::new()) };
}

/// Whether the block op's parameters are packed outside the graph (`UNISAL_PACKED_GRADS`, on unless `0`, `false`,
/// `off`).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| super::env_not_off("UNISAL_PACKED_GRADS"))
}

/// Called by a block op's backward: `dp`, the gradient of the packed parameters `vars` describes, waits on this
/// thread for [`backward`] (or [`collect`]).
pub(crate) fn hand_over(vars: &Arc<PackedVars>, dp: Tensor) {
    PENDING.with(|p| p.borrow_mut().push((vars.clone(), dp)));
}

/// `loss.backward()`, then each packed parameter's gradient put into the store ([`collect`]). Use it in place of
/// `Tensor::backward` wherever a network in train mode is in the graph.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    // Anything left over from a backward whose gradients nobody collected belongs to no step of this one.
    PENDING.with(|p| p.borrow_mut().clear());
    let mut grads = loss.backward()?;
    collect(&mut grads)?;
    Ok(grads)
}

/// Puts the gradients handed over on this thread since the last collection into `grads`, each variable's added to
/// what the store already holds for it.
pub fn collect(grads: &mut GradStore) -> Result<()> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (vars, dp) in pending {
        for (var, g) in vars.grads(&dp)? {
            let g = match grads.remove(&var) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            grads.insert(&var, g);
        }
    }
    Ok(())
}

/// An error if packed gradients on this thread were handed over and not collected: the optimiser would otherwise
/// skip those parameters without a word.
pub(crate) fn ensure_collected() -> Result<()> {
    let waiting: usize = PENDING.with(|p| p.borrow().iter().map(|(v, _)| v.len()).sum());
    if waiting == 0 {
        return Ok(());
    }
    Err(TrainError::InvalidModel(format!(
        "the gradients of {waiting} packed parameters were not collected: compute gradients with \
         unisal_train::nn::backward (or call nn::collect after Tensor::backward)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn iota(n: usize) -> Tensor {
        Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap()
    }

    #[test]
    fn each_variable_gets_its_piece_in_its_own_order() {
        let dev = Device::Cpu;
        let w = Var::zeros((2, 3, 1, 2), DType::F32, &dev).unwrap(); // 12 values, packed [O, kh, kw, C]
        let g = Var::zeros(3, DType::F32, &dev).unwrap();
        let mut vars = PackedVars::default();
        vars.push(w.as_tensor(), 0, true).unwrap();
        vars.push(g.as_tensor(), 16, false).unwrap();
        let got = vars.grads(&iota(24)).unwrap();
        // Packed index of (o, c, 0, j) is o*6 + j*3 + c.
        let want: Vec<f32> = (0..2)
            .flat_map(|o| (0..3).flat_map(move |c| (0..2).map(move |j| (o * 6 + j * 3 + c) as f32)))
            .collect();
        assert_eq!(got[0].0.id(), w.as_tensor().id());
        assert_eq!(got[0].1.dims(), &[2, 3, 1, 2]);
        assert_eq!(got[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
        assert_eq!(got[1].1.to_vec1::<f32>().unwrap(), vec![16.0, 17.0, 18.0]);
    }

    #[test]
    fn a_bf16_gradient_reaches_f32_variables_cast_and_added_to_what_the_store_holds() {
        let dev = Device::Cpu;
        let a = Var::zeros(4, DType::F32, &dev).unwrap();
        let b = Var::zeros(2, DType::F32, &dev).unwrap();
        // A store that already holds a gradient for `a` (as if `a` were used outside the op too).
        let mut grads = (a.as_tensor() * 10.0).unwrap().sum_all().unwrap().backward().unwrap();
        let mut vars = PackedVars::default();
        vars.push(a.as_tensor(), 0, false).unwrap();
        vars.push(b.as_tensor(), 8, false).unwrap();
        hand_over(&Arc::new(vars), iota(10).to_dtype(DType::BF16).unwrap());
        assert!(ensure_collected().is_err(), "handed over and not collected");
        collect(&mut grads).unwrap();
        ensure_collected().unwrap();
        let ga = grads.get(a.as_tensor()).unwrap();
        assert_eq!(ga.dtype(), DType::F32);
        assert_eq!(ga.to_vec1::<f32>().unwrap(), vec![10.0, 11.0, 12.0, 13.0]);
        assert_eq!(grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![8.0, 9.0]);
    }

    #[test]
    fn a_piece_past_the_gradient_or_a_channels_last_vector_is_refused() {
        let v = Var::zeros(4, DType::F32, &Device::Cpu).unwrap();
        let mut vars = PackedVars::default();
        assert!(vars.push(v.as_tensor(), 0, true).is_err());
        vars.push(v.as_tensor(), 8, false).unwrap();
        let err = vars.grads(&iota(10)).unwrap_err().to_string();
        assert!(err.contains("8..12") && err.contains("10 values"), "{err}");
    }

    /// `(x, p) -> p`, whose backward hands `p`'s gradient over as the block op's does: the graph of the block op
    /// with the stem inside, where `x` (the images) is not tracked and `p` is a variable of its own.
    struct Echo(Arc<PackedVars>);

    impl candle_core::CustomOp2 for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            s: &candle_core::CpuStorage,
            l: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            let candle_core::CpuStorage::F32(v) = s else { candle_core::bail!("f32 expected") };
            let (a, b) = l.contiguous_offsets().expect("contiguous");
            Ok((candle_core::CpuStorage::F32(v[a..b].to_vec()), l.shape().clone()))
        }
        fn bwd(
            &self,
            _: &Tensor,
            _: &Tensor,
            _: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
            hand_over(&self.0, grad.clone());
            Ok((None, None))
        }
    }

    #[test]
    fn a_packed_variable_leaf_carries_the_gradient_to_the_variables_through_candles_backward() {
        let dev = Device::Cpu;
        let a = Var::from_vec(vec![1f32, 2.0, 3.0, 4.0], 4, &dev).unwrap();
        let b = Var::from_vec(vec![5f32, 6.0], 2, &dev).unwrap();
        let mut vars = PackedVars::default();
        vars.push(a.as_tensor(), 0, false).unwrap();
        vars.push(b.as_tensor(), 4, false).unwrap();
        let packed = Tensor::cat(&[a.as_tensor(), b.as_tensor()], 0).unwrap().detach();
        let p = Var::from_tensor(&packed).unwrap();
        let images = Tensor::zeros(3, DType::F32, &dev).unwrap();
        let out = images.apply_op2(p.as_tensor(), Echo(Arc::new(vars))).unwrap();
        assert!(out.track_op(), "the op is a node of the graph through its variable input");
        let r = Tensor::from_vec(vec![1f32, -1.0, 2.0, -2.0, 3.0, -3.0], 6, &dev).unwrap();
        let grads = backward(&(&out * &r).unwrap().sum_all().unwrap()).unwrap();
        let g = |v: &Var| grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g(&a), vec![1.0, -1.0, 2.0, -2.0]);
        assert_eq!(g(&b), vec![3.0, -3.0]);
        assert!(grads.get(p.as_tensor()).is_none(), "the packed leaf itself gets no gradient buffer");
    }

    #[test]
    fn backward_clears_what_an_earlier_uncollected_backward_left() {
        let v = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let mut vars = PackedVars::default();
        vars.push(v.as_tensor(), 0, false).unwrap();
        hand_over(&Arc::new(vars), iota(2));
        let w = Var::ones(3, DType::F32, &Device::Cpu).unwrap();
        let grads = backward(&w.as_tensor().sum_all().unwrap()).unwrap();
        ensure_collected().unwrap();
        assert!(grads.get(v.as_tensor()).is_none(), "the stale gradient was not put into this step's store");
        assert_eq!(grads.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![1.0; 3]);
    }
}

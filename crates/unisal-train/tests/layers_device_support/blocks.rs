//! ResNet blocks for `layers_gradcheck_device.rs`: their vars, and the blocks built from them and run in train mode
//! as one op (`nn::blocks::blocks_train_in`, in either layout) or layer by layer.

use candle_core::{Device, Tensor, Var};
use unisal_train::nn::blocks::{blocks_train_in, BlockLayout};
use unisal_train::nn::fused::conv_bn_train;
use unisal_train::nn::{add_relu, BatchNorm2d, Conv2d};

use super::pair;

/// A ResNet block: its input's dims, its main path's convolutions `(c_in, c_out, k, stride)` and its downsample's
/// stride (none: the identity).
pub type BlockSpec = ([usize; 4], Vec<(usize, usize, usize, usize)>, Option<usize>);
/// Each var as its f64 CPU and its device twin.
pub type Vars = Vec<(Var, Var)>;

/// The vars of blocks one after the other (the first's input, then each convolution's weight, gamma and beta, each
/// block's main path then its downsample) and `f(vars, x, as_op)` building the blocks from them and running them in
/// train mode: with `as_op` as one op in that layout (`blocks_train_in`) where it runs, which on CUDA with our
/// kernels it must, else (or without `as_op`) layer by layer.
pub fn block_case(
    specs: &[BlockSpec],
    seed: u64,
    dev: &Device,
) -> (Vars, impl Fn(&[&Var], Tensor, Option<BlockLayout>) -> Tensor) {
    let mut blocks = Vec::new();
    for (xs, main, down) in specs {
        let mut layers = main.clone();
        if let Some(s) = down {
            layers.push((xs[1], main.last().unwrap().1, 1, *s));
        }
        blocks.push((layers, main.len()));
    }
    let mut vars = vec![pair(&specs[0].0, seed, false, dev)];
    for (i, &(ci, co, k, _)) in blocks.iter().flat_map(|b| &b.0).enumerate() {
        let s = seed + 1 + 3 * i as u64;
        vars.extend([
            pair(&[co, ci, k, k], s, false, dev),
            pair(&[co], s + 1, false, dev),
            pair(&[co], s + 2, false, dev),
        ]);
    }
    let run = move |v: &[&Var], x: Tensor, as_op: Option<BlockLayout>| {
        let mut at = 0;
        let mut built = Vec::new();
        for (layers, main) in &blocks {
            let cbn = |i: usize| {
                let (_, co, k, s) = layers[i];
                let j = at + i;
                let (d, dt) = (v[1].device(), v[1].dtype());
                let (rm, rv) = (Var::zeros(co, dt, d).unwrap(), Var::ones(co, dt, d).unwrap());
                let bn = BatchNorm2d::from_vars(v[2 + 3 * j].clone(), v[3 + 3 * j].clone(), rm, rv);
                (Conv2d::from_vars(v[1 + 3 * j].clone(), None, s, k / 2), bn)
            };
            let convs: Vec<_> = (0..*main).map(cbn).collect();
            let ds = (layers.len() > *main).then(|| cbn(*main));
            at += layers.len();
            built.push((convs, ds));
        }
        let refs: Vec<_> = built.iter().map(|(c, d)| (&c[..], d.as_ref())).collect();
        if let Some(layout) = as_op {
            if let Some(y) = blocks_train_in(&x, &refs, layout).unwrap() {
                return y;
            }
            let kernels = std::env::var("UNISAL_GPU_KERNELS").map_or(true, |v| v.trim() != "0");
            assert!(!(x.device().is_cuda() && kernels), "the block op did not run on CUDA");
        }
        let mut x = x;
        for (convs, ds) in &built {
            let mut y = x.clone();
            for (i, (conv, bn)) in convs.iter().enumerate() {
                y = conv_bn_train(conv, bn, &y, i + 1 < convs.len()).unwrap();
            }
            let identity =
                ds.as_ref().map_or(x.clone(), |(conv, bn)| conv_bn_train(conv, bn, &x, false).unwrap());
            x = add_relu(&y, &identity).unwrap();
        }
        x
    };
    (vars, run)
}

//! SGD with momentum and weight decay, with PyTorch's semantics (candle-nn's SGD has no momentum):
//! `g = grad + wd * w; buf = g` on a parameter's first step, else `buf = momentum * buf + g`; `w -= lr * buf`.
//! No dampening, no Nesterov. A parameter without a gradient in a step is skipped entirely (as torch does).

use crate::error::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// SGD with momentum over a fixed list of parameters.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    buffers: Vec<Option<Tensor>>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// An optimiser over `vars` with the given initial learning rate, momentum and weight decay.
    pub fn new(vars: Vec<Var>, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        let buffers = vec![None; vars.len()];
        Self { vars, buffers, lr, momentum, weight_decay }
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate of the next steps (the schedule calls this every iteration).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The parameters this optimiser updates.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// One update of every parameter that has a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (var, buf) in self.vars.iter().zip(self.buffers.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let w = var.as_tensor().detach();
            let grad = grad.detach();
            let g = if self.weight_decay != 0.0 { (grad + w.affine(self.weight_decay, 0.0)?)? } else { grad };
            let next = match buf.take() {
                Some(prev) if self.momentum != 0.0 => (prev.affine(self.momentum, 0.0)? + g)?,
                _ => g,
            };
            let updated = (&w - next.affine(self.lr, 0.0)?)?;
            var.set(&updated)?;
            *buf = (self.momentum != 0.0).then_some(next);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_steps_by_hand() {
        // w0 = 1, grad of L = 3w is 3 each step; lr 0.1, momentum 0.9, wd 0.5
        let w = Var::from_vec(vec![1.0f64], 1, &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![w.clone()], 0.1, 0.9, 0.5);
        for _ in 0..2 {
            let loss = w.as_tensor().affine(3.0, 0.0).unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        // step 1: g = 3 + 0.5 = 3.5, buf = 3.5, w = 1 - 0.35 = 0.65
        // step 2: g = 3 + 0.325 = 3.325, buf = 3.15 + 3.325 = 6.475, w = 0.65 - 0.6475 = 0.0025
        let got = w.as_tensor().to_vec1::<f64>().unwrap()[0];
        assert!((got - 0.0025).abs() < 1e-12, "{got}");
    }

    #[test]
    fn parameters_without_gradient_are_untouched() {
        let used = Var::from_vec(vec![2.0f64], 1, &Device::Cpu).unwrap();
        let unused = Var::from_vec(vec![5.0f64], 1, &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![used.clone(), unused.clone()], 0.5, 0.9, 0.1);
        let loss = used.as_tensor().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        assert_eq!(unused.as_tensor().to_vec1::<f64>().unwrap(), vec![5.0]);
        // g = 1 + 0.2 = 1.2; w = 2 - 0.6
        assert!((used.as_tensor().to_vec1::<f64>().unwrap()[0] - 1.4).abs() < 1e-12);
    }
}

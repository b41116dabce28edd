//! Fully connected layer `y = x W^T (+ b)`, weight `[out, in]` as in torch.

use candle_core::{Tensor, Var};

use super::{param_as, push_var, HasVars, Init, NamedVar, VarKind};
use crate::error::Result;

/// A linear layer with optional bias.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Var,
    bias: Option<Var>,
}

impl Linear {
    /// A linear layer with torch's default init: weight and bias uniform(-1/sqrt(in), 1/sqrt(in)).
    pub fn new(init: &Init, name: &str, in_features: usize, out_features: usize, bias: bool) -> Result<Self> {
        let bound = 1.0 / (in_features as f64).sqrt();
        let weight = init.uniform(&super::join_name(name, "weight"), &[out_features, in_features], bound)?;
        let bias = if bias {
            Some(init.uniform(&super::join_name(name, "bias"), &[out_features], bound)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// A linear layer from existing variables (weight `[out, in]`, bias `[out]`).
    pub fn from_vars(weight: Var, bias: Option<Var>) -> Self {
        Self { weight, bias }
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    /// `x: [N, in]` -> `[N, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&param_as(&self.weight, x.dtype())?.t()?)?;
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(&param_as(b, x.dtype())?)?),
            None => Ok(y),
        }
    }
}

impl HasVars for Linear {
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        push_var(out, prefix, "weight", &self.weight, VarKind::Param);
        if let Some(b) = &self.bias {
            push_var(out, prefix, "bias", b, VarKind::Param);
        }
    }
}

//! Deterministic parameter initialisation on the host, then moved to the device: the same seed gives the same
//! weights on every device.
//!
//! Each parameter draws from its own ChaCha8 stream seeded by (seed, parameter name), so a parameter's initial
//! value does not depend on the order in which layers are built. Distributions follow torchvision's ResNet:
//! convolutions kaiming-normal with fan_out and ReLU gain, BatchNorm weight 1 and bias 0, Linear torch's default
//! uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// Initialisation context: seed, target device and dtype.
#[derive(Debug, Clone)]
pub struct Init {
    seed: u64,
    device: Device,
    dtype: DType,
}

impl Init {
    /// A context that creates f32 variables on `device`.
    pub fn new(seed: u64, device: &Device) -> Self {
        Self::with_dtype(seed, device, DType::F32)
    }

    /// A context with an explicit dtype (f64 for gradient checks).
    pub fn with_dtype(seed: u64, device: &Device, dtype: DType) -> Self {
        Self { seed, device: device.clone(), dtype }
    }

    /// The same device and dtype with another seed.
    pub fn reseeded(&self, seed: u64) -> Self {
        Self { seed, ..self.clone() }
    }

    /// The target device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The target dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The random stream of the parameter `name`.
    pub fn rng(&self, name: &str) -> ChaCha8Rng {
        // FNV-1a of the name, mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        ChaCha8Rng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ h)
    }

    /// Wrap host values into a variable on the device.
    pub fn var_from_vec(&self, values: Vec<f64>, shape: &[usize]) -> Result<Var> {
        let t =
            Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(self.dtype)?.to_device(&self.device)?;
        Ok(Var::from_tensor(&t)?)
    }

    /// Kaiming-normal, mode fan_out, ReLU gain (torchvision's conv init): N(0, 2 / (out * k * k)).
    pub fn kaiming_normal_fan_out(&self, name: &str, shape: &[usize]) -> Result<Var> {
        let fan_out: usize = shape[0] * shape[2..].iter().product::<usize>();
        let std = (2.0 / fan_out as f64).sqrt();
        let mut rng = self.rng(name);
        let n: usize = shape.iter().product();
        let mut values = Vec::with_capacity(n + 1);
        while values.len() < n {
            let (a, b) = normal_pair(&mut rng);
            values.push(std * a);
            values.push(std * b);
        }
        values.truncate(n);
        self.var_from_vec(values, shape)
    }

    /// Uniform(-bound, bound).
    pub fn uniform(&self, name: &str, shape: &[usize], bound: f64) -> Result<Var> {
        let mut rng = self.rng(name);
        let n: usize = shape.iter().product();
        let values = (0..n).map(|_| rng.gen_range(-bound..=bound)).collect();
        self.var_from_vec(values, shape)
    }

    /// A constant.
    pub fn constant(&self, shape: &[usize], value: f64) -> Result<Var> {
        let n: usize = shape.iter().product();
        self.var_from_vec(vec![value; n], shape)
    }
}

/// Two independent standard normal draws (Box-Muller) from one 64-bit draw (two 32-bit uniforms, plenty for
/// initial weights).
fn normal_pair(rng: &mut ChaCha8Rng) -> (f64, f64) {
    let bits = rng.next_u64();
    const SCALE: f64 = 1.0 / 4_294_967_296.0;
    // u1 in (0, 1] so that ln is finite.
    let u1 = ((bits >> 32) as f64 + 1.0) * SCALE;
    let u2 = (bits & 0xffff_ffff) as f64 * SCALE;
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_seed_and_name_only() {
        let a = Init::new(7, &Device::Cpu);
        let w1 = a.kaiming_normal_fan_out("conv1.weight", &[4, 3, 3, 3]).unwrap();
        let _other = a.uniform("fc.weight", &[5, 4], 0.5).unwrap();
        let w2 = a.kaiming_normal_fan_out("conv1.weight", &[4, 3, 3, 3]).unwrap();
        let v1: Vec<f32> = w1.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let v2: Vec<f32> = w2.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v1, v2);
        let w3 = a.reseeded(8).kaiming_normal_fan_out("conv1.weight", &[4, 3, 3, 3]).unwrap();
        let v3: Vec<f32> = w3.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert_ne!(v1, v3);
        let w4 = a.kaiming_normal_fan_out("conv2.weight", &[4, 3, 3, 3]).unwrap();
        let v4: Vec<f32> = w4.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert_ne!(v1, v4);
    }

    #[test]
    fn kaiming_normal_has_the_right_spread() {
        let init = Init::new(1, &Device::Cpu);
        // fan_out = 64 * 9 = 576 -> std = sqrt(2 / 576) = 0.0589.
        let w = init.kaiming_normal_fan_out("w", &[64, 32, 3, 3]).unwrap();
        let v: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
        let var = v.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / n;
        let expected = 2.0 / 576.0;
        assert!(mean.abs() < 0.003, "mean {mean}");
        assert!((var / expected - 1.0).abs() < 0.05, "var {var} expected {expected}");
    }

    #[test]
    fn uniform_stays_in_bounds() {
        let init = Init::new(3, &Device::Cpu);
        let w = init.uniform("fc.weight", &[10, 100], 0.1).unwrap();
        let v: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.abs() <= 0.1));
        let max = v.iter().cloned().fold(0f32, f32::max);
        assert!(max > 0.09, "max {max}");
    }
}

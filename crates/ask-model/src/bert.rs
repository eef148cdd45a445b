//! A BERT encoder forward pass tuned for batched sentence embedding on CPU.
//!
//! Same weights and same maths as candle-transformers' `BertModel` (and
//! Hugging Face's), arranged to do less work per token:
//!
//! - the 1/sqrt(head_dim) attention scale is folded into the query weights
//!   at load time instead of a pass over every `[batch, heads, L, L]` score;
//! - query, key and value are one fused matmul;
//! - the padding mask is added only when the batch has padding (batches are
//!   length-sorted, so most have little or none);
//! - softmax is candle's fused, parallel last-dimension kernel rather than
//!   the generic multi-pass one;
//! - GELU (erf form) runs in parallel across cores with a polynomial erf,
//!   where candle's runs libm's erf on one core.
//!
//! Measured by `examples/embed-bench.rs`; correctness is guarded by the
//! reference-embedding test in `embed.rs`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// The encoder: embeddings and transformer layers, no pooling.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    act: HiddenAct,
}

impl Bert {
    /// Loads the weights (`bert.`-prefixed or not) for `config`.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Bert> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        let head_dim = h / heads;
        let e = vb.pp("embeddings");
        let eps = config.layer_norm_eps;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                let q = linear(h, h, a.pp("self.query"))?;
                let k = linear(h, h, a.pp("self.key"))?;
                let v = linear(h, h, a.pp("self.value"))?;
                let bias = |x: &Linear| x.bias().cloned().expect("BERT linears have biases");
                let weight = Tensor::cat(&[(q.weight() * scale)?, k.weight().clone(), v.weight().clone()], 0)?;
                let b = Tensor::cat(&[(bias(&q) * scale)?, bias(&k), bias(&v)], 0)?;
                Ok(Layer {
                    qkv: Linear::new(weight, Some(b)),
                    attn_out: linear(h, h, a.pp("output.dense"))?,
                    attn_norm: layer_norm(h, eps, a.pp("output.LayerNorm"))?,
                    up: linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                    down: linear(config.intermediate_size, h, l.pp("output.dense"))?,
                    out_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            word: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(config.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type: embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            embed_norm: layer_norm(h, eps, e.pp("LayerNorm"))?,
            layers,
            heads,
            head_dim,
            act: config.hidden_act,
        })
    }

    /// Token vectors `[batch, seq, hidden]` for `ids` `[batch, seq]`; `mask`
    /// (1 for tokens, 0 for padding) is needed only when there is padding.
    pub fn forward(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let positions = Tensor::arange(0u32, l as u32, ids.device())?;
        let types = Tensor::zeros((1, 1), DType::U32, ids.device())?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .broadcast_add(&self.token_type.forward(&types)?)?;
        let mut x = self.embed_norm.forward(&x)?;
        // Additive mask [b, 1, 1, l]: 0 for tokens, a large negative for padding.
        let bias = match mask {
            Some(m) => Some(((m.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, l))?),
            None => None,
        };
        let h = self.heads * self.head_dim;
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?; // [b, l, 3h]
            let split = |i: usize| {
                qkv.narrow(D::Minus1, i * h, h)?.reshape((b, l, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let mut scores = q.matmul(&k.t()?)?; // [b, heads, l, l], already scaled
            if let Some(bias) = &bias {
                scores = scores.broadcast_add(bias)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))?;
            let attn = layer.attn_norm.forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let up = layer.up.forward(&attn)?;
            let up = match self.act {
                HiddenAct::Gelu => up.apply_op1_no_bwd(&ParGeluErf)?,
                HiddenAct::GeluApproximate => up.gelu()?,
                HiddenAct::Relu => up.relu()?,
            };
            x = layer.out_norm.forward(&(layer.down.forward(&up)? + attn)?)?;
        }
        Ok(x)
    }
}

/// GELU, erf form (`0.5 x (1 + erf(x / sqrt 2))`), computed in parallel.
struct ParGeluErf;

/// erf by Abramowitz & Stegun 7.1.26: absolute error below 1.5e-7, under
/// f32's resolution of the result.
#[inline]
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    s * (1.0 - poly * (-a * a).exp())
}

#[inline]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

impl CustomOp1 for ParGeluErf {
    fn name(&self) -> &'static str {
        "par-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("par-gelu-erf: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("par-gelu-erf: contiguous input only");
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(16 * 1024).zip(src.par_chunks(16 * 1024)).for_each(|(o, i)| {
            for (o, &x) in o.iter_mut().zip(i) {
                *o = gelu_erf(x);
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn polynomial_erf_matches_libm() {
        let mut worst = 0f64;
        for i in -8000..=8000 {
            let x = i as f64 / 1000.0;
            let exact = 0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
            worst = worst.max((gelu_erf(x as f32) as f64 - exact).abs());
        }
        assert!(worst < 2e-6, "worst absolute error {worst}");
    }

    /// erf by its Taylor series (converges for the |x| < 6 tested here),
    /// independent of the approximation under test.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let (mut sum, mut term, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-18 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn parallel_gelu_agrees_with_candles_on_a_tensor() {
        let xs = Tensor::arange(-300i64, 300, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
        let xs = (xs / 50.0).unwrap();
        let ours = xs.apply_op1_no_bwd(&ParGeluErf).unwrap().to_vec1::<f32>().unwrap();
        let theirs = xs.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 2e-6, "{worst}");
    }
}

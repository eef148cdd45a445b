//! A BERT or MPNet encoder forward pass tuned for batched sentence
//! embedding on CPU.
//!
//! Same weights and same maths as candle-transformers' `BertModel` (and
//! Hugging Face's `BertModel` and `MPNetModel`), arranged to do less work
//! per token. MPNet is BERT with other tensor names, positions counted from
//! `pad_token_id + 1`, no token types, and one learned relative-position
//! bias added to every layer's attention scores. Both:
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

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use rayon::prelude::*;
use serde::Deserialize;

/// The encoder architectures ask runs, by `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// BERT (MiniLM, bge, e5, gte).
    Bert,
    /// MPNet (all-mpnet-base-v2).
    MpNet,
}

impl Family {
    /// The family a `model_type` (or, without one, an architecture name) names.
    pub(crate) fn of(model_type: &str, architectures: &[String]) -> Option<Family> {
        match model_type {
            "bert" => Some(Family::Bert),
            "mpnet" => Some(Family::MpNet),
            "" if architectures.iter().any(|a| a.starts_with("Bert")) => Some(Family::Bert),
            "" if architectures.iter().any(|a| a.starts_with("MPNet")) => Some(Family::MpNet),
            _ => None,
        }
    }
}

/// The activation of the feed-forward layers, by Hugging Face's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub(crate) enum HiddenAct {
    /// GELU, erf form.
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU, tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_approximate")]
    GeluApproximate,
    /// ReLU.
    #[serde(rename = "relu")]
    Relu,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_buckets() -> usize {
    32
}

/// What `config.json` says about the encoder's shape (the fields ask uses).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default)]
    pub hidden_act: HiddenAct,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// MPNet's relative-position buckets.
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
}

impl Config {
    /// The first position id of a sequence: MPNet (like RoBERTa) counts
    /// from `pad_token_id + 1`, BERT from 0.
    pub(crate) fn first_position(&self, family: Family) -> usize {
        match family {
            Family::Bert => 0,
            Family::MpNet => self.pad_token_id + 1,
        }
    }
}

/// MPNet's bidirectional bucket (as T5's) of a relative position, the key's
/// position minus the query's: exact below a quarter of the buckets, then
/// logarithmic up to `max_distance`, one half of the buckets per direction.
fn relative_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let half = (num_buckets / 2) as i64;
    let n = -relative;
    let side = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        return (side + n) as u32;
    }
    let scaled = (n as f64 / max_exact as f64).ln() / (max_distance as f64 / max_exact as f64).ln() * (half - max_exact) as f64;
    (side + (max_exact + scaled as i64).min(half - 1)) as u32
}

/// MPNet's relative positions reach this far; beyond it they share a bucket.
const MAX_DISTANCE: usize = 128;

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// The encoder: embeddings and transformer layers, no pooling.
pub(crate) struct Bert {
    word: Embedding,
    position: Embedding,
    /// BERT's token types (all 0 here); MPNet has none.
    token_type: Option<Embedding>,
    /// Position id of a sequence's first token.
    first_position: u32,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    /// MPNet's relative-position bias, `[buckets, heads]`.
    relative_bias: Option<Tensor>,
    buckets: usize,
    heads: usize,
    head_dim: usize,
    act: HiddenAct,
}

impl Bert {
    /// Loads the weights of a `family` encoder (`bert.`- or
    /// `mpnet.`-prefixed or not) for `config`.
    pub(crate) fn load(vb: VarBuilder, config: &Config, family: Family) -> Result<Bert> {
        let prefix = match family {
            Family::Bert => "bert",
            Family::MpNet => "mpnet",
        };
        let vb = if vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) { vb.pp(prefix) } else { vb };
        // Tensor names inside a layer: (query, key, value, attention out, attention norm).
        let names = match family {
            Family::Bert => ["self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"],
            Family::MpNet => ["attn.q", "attn.k", "attn.v", "attn.o", "LayerNorm"],
        };
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
                let q = linear(h, h, a.pp(names[0]))?;
                let k = linear(h, h, a.pp(names[1]))?;
                let v = linear(h, h, a.pp(names[2]))?;
                let bias = |x: &Linear| x.bias().cloned().expect("BERT linears have biases");
                let weight = Tensor::cat(&[(q.weight() * scale)?, k.weight().clone(), v.weight().clone()], 0)?;
                let b = Tensor::cat(&[(bias(&q) * scale)?, bias(&k), bias(&v)], 0)?;
                Ok(Layer {
                    qkv: Linear::new(weight, Some(b)),
                    attn_out: linear(h, h, a.pp(names[3]))?,
                    attn_norm: layer_norm(h, eps, a.pp(names[4]))?,
                    up: linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                    down: linear(config.intermediate_size, h, l.pp("output.dense"))?,
                    out_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (token_type, relative_bias) = match family {
            Family::Bert => (Some(embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?), None),
            Family::MpNet => {
                let buckets = config.relative_attention_num_buckets;
                (None, Some(vb.pp("encoder.relative_attention_bias").get((buckets, heads), "weight")?))
            }
        };
        Ok(Bert {
            word: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(config.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type,
            first_position: config.first_position(family) as u32,
            embed_norm: layer_norm(h, eps, e.pp("LayerNorm"))?,
            layers,
            relative_bias,
            buckets: config.relative_attention_num_buckets,
            heads,
            head_dim,
            act: config.hidden_act,
        })
    }

    /// MPNet's relative-position bias for sequences of `l` tokens,
    /// `[1, heads, l, l]`; None for BERT.
    fn position_bias(&self, l: usize, device: &Device) -> Result<Option<Tensor>> {
        let Some(table) = &self.relative_bias else { return Ok(None) };
        let buckets: Vec<u32> =
            (0..l).flat_map(|i| (0..l).map(move |j| relative_bucket(j as i64 - i as i64, self.buckets, MAX_DISTANCE))).collect();
        let buckets = Tensor::from_vec(buckets, l * l, device)?;
        let bias = table.index_select(&buckets, 0)?.reshape((l, l, self.heads))?.permute((2, 0, 1))?.contiguous()?;
        Ok(Some(bias.unsqueeze(0)?))
    }

    /// Token vectors `[batch, seq, hidden]` for `ids` `[batch, seq]`; `mask`
    /// (1 for tokens, 0 for padding) is needed only when there is padding.
    /// Padding is at the end of a row, so every row's tokens have the
    /// positions of an unpadded sequence.
    pub(crate) fn forward(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let positions = Tensor::arange(self.first_position, self.first_position + l as u32, ids.device())?;
        let mut x = self.word.forward(ids)?.broadcast_add(&self.position.forward(&positions)?)?;
        if let Some(token_type) = &self.token_type {
            let types = Tensor::zeros((1, 1), DType::U32, ids.device())?;
            x = x.broadcast_add(&token_type.forward(&types)?)?;
        }
        let mut x = self.embed_norm.forward(&x)?;
        // Additive mask [b, 1, 1, l]: 0 for tokens, a large negative for padding.
        let mask_bias = match mask {
            Some(m) => Some(((m.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, l))?),
            None => None,
        };
        // Everything added to the scores, the same in every layer.
        let bias = match (self.position_bias(l, ids.device())?, mask_bias) {
            (Some(p), Some(m)) => Some(p.broadcast_add(&m)?),
            (p, m) => p.or(m),
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
    fn relative_buckets_follow_mpnets_rule() {
        // 32 buckets, 128 apart at most, worked by hand from Hugging Face's
        // rule: keys before the query take buckets 0-15, keys after it
        // 16-31; exact below 8, then 8 + floor(ln(n / 8) / ln 16 * 8),
        // held to 15.
        let b = |r| relative_bucket(r, 32, 128);
        assert_eq!((b(0), b(-1), b(-7)), (0, 1, 7));
        assert_eq!((b(3), b(7)), (19, 23));
        assert_eq!((b(-8), b(-15), b(-16)), (8, 9, 10)); // ln(15/8)/ln 16 * 8 = 1.8
        assert_eq!((b(-64), b(-127), b(-128), b(-1000)), (14, 15, 15, 15)); // 127: 7.98
        assert_eq!((b(16), b(1000)), (26, 31));
    }

    #[test]
    fn families_are_told_by_model_type_or_architecture() {
        assert_eq!(Family::of("mpnet", &[]), Some(Family::MpNet));
        assert_eq!(Family::of("", &["BertModel".into()]), Some(Family::Bert));
        assert_eq!(Family::of("", &["MPNetForMaskedLM".into()]), Some(Family::MpNet));
        assert_eq!(Family::of("roberta", &[]), None);
    }

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

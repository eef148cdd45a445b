//! One decoder-only transformer for every GGUF family ask runs.
//!
//! llama, qwen2, qwen3, phi3 and gemma3 differ in a handful of switches
//! (RoPE layout, biases, per-head Q/K norms, fused projections, extra
//! norms, the MLP's activation, sliding-window layers), so they share this
//! forward pass instead of five copies of it. Owning it lets ask:
//! - run prefill through f32 sgemm and decode through quantized kernels
//!   ([`crate::quant::Linear`]);
//! - size RoPE tables and the KV cache to the context ask uses, not to
//!   the model's 128K maximum;
//! - start every prompt from an empty cache, for every family;
//! - share one K/V head among its query heads without copying it;
//! - run attention as fused tasks that compute only the scores a query
//!   may see ([`attend`]), with no mask tensors.
//!
//! The tests below check its logits against candle-transformers' llama
//! (an implementation written apart from this one) on SmolLM2, in f32 and
//! through the fast kernels, and its sliding-window and chunked-prefill
//! paths against plain runs; the other families are exercised end to end
//! by the integration tests (Qwen2.5, the default model) and by `ask eval`.

use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor, D};

use crate::ops;
use crate::quant::{dequantize, Linear};

/// The `general.architecture` values this decoder runs.
pub const ARCHITECTURES: [&str; 6] = ["llama", "mistral", "qwen2", "qwen3", "gemma3", "phi3"];

/// Queries per attention task: a prompt's attention is split into tasks
/// of this many queries of one head, each attending only to the keys it
/// may see, so the triangle a causal mask would discard is mostly never
/// computed, and the tasks share the cores.
pub const ATTN_CHUNK: usize = 128;

/// Most positions [`Decoder::forward_each`] runs exactly as one-at-a-time
/// decode steps would: as many as ask's kernels take in one pass.
pub const VERIFY_ROWS: usize = crate::matvec::MAX_ROWS;

/// The switches that tell one family from another.
#[derive(Debug, Clone)]
struct Config {
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope_dim: usize,
    rope_base: f32,
    /// Gemma 3: RoPE base of the sliding-window layers.
    rope_base_local: Option<f32>,
    /// RoPE pairs (i, i + d/2) rather than (2i, 2i + 1).
    neox: bool,
    eps: f64,
    /// Gemma: embeddings are scaled by sqrt(hidden).
    embed_scale: Option<f64>,
    /// Gemma: tanh-GELU gate; everyone else SiLU.
    gelu: bool,
    /// Gemma 3: window of the local layers, and which layers are global.
    sliding_window: Option<usize>,
    global_every: usize,
    /// Attention scale.
    scale: f64,
}

struct Norm {
    weight: Tensor,
    eps: f32,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

enum Qkv {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

enum GateUp {
    Separate { gate: Linear, up: Linear },
    /// One matrix, gate rows first (phi3's own, or the two stacked).
    Fused(Linear),
}

struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

impl KvCache {
    /// Appends (1, kv_heads, s, d) keys and values.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let s = k.dim(2)?;
        let need = self.len + s;
        let cap = self.k.as_ref().map(|t| t.dim(2)).transpose()?.unwrap_or(0);
        if need > cap {
            // Grow by doubling (in steps of 256 positions) so that decode
            // copies the cache only a logarithmic number of times.
            let new_cap = need.max(cap * 2).next_multiple_of(256);
            let (_, h, _, d) = k.dims4()?;
            let grow = |old: &Option<Tensor>| -> Result<Tensor> {
                let t = Tensor::zeros((1, h, new_cap, d), k.dtype(), k.device())?;
                if let Some(old) = old {
                    t.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
                Ok(t)
            };
            self.k = Some(grow(&self.k)?);
            self.v = Some(grow(&self.v)?);
        }
        let (kc, vc) = (self.k.as_ref().expect("allocated"), self.v.as_ref().expect("allocated"));
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = need;
        Ok(())
    }
}

struct Layer {
    attn_norm: Norm,
    qkv: Qkv,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    o: Linear,
    post_attn_norm: Option<Norm>,
    ffn_norm: Norm,
    gate_up: GateUp,
    down: Linear,
    post_ffn_norm: Option<Norm>,
    /// Some(window) for a sliding-window layer.
    window: Option<usize>,
    /// Index into `Decoder::ropes`.
    rope: usize,
    cache: KvCache,
}

struct Rope {
    cos: Tensor,
    sin: Tensor,
}

/// A loaded decoder with its KV cache.
pub struct Decoder {
    cfg: Config,
    /// The token embedding table, also the output layer when tied.
    embed: Linear,
    layers: Vec<Layer>,
    norm: Norm,
    output: Linear,
    ropes: Vec<Rope>,
    max_positions: usize,
}

/// Reads tensors and metadata of one family from a GGUF file.
struct Gguf<'a, R> {
    ct: &'a gguf_file::Content,
    reader: &'a mut R,
    arch: &'a str,
    fast: bool,
}

impl<R: Read + Seek> Gguf<'_, R> {
    fn meta(&self, key: &str) -> Option<&Value> {
        self.ct.metadata.get(&format!("{}.{key}", self.arch))
    }
    fn u32(&self, key: &str) -> Result<usize> {
        match self.meta(key) {
            Some(v) => Ok(v.to_u32()? as usize),
            None => candle_core::bail!("no {}.{key} in the GGUF metadata", self.arch),
        }
    }
    fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        self.meta(key).map(|v| v.to_f32()).transpose().map(|v| v.unwrap_or(default))
    }
    fn has(&self, name: &str) -> bool {
        self.ct.tensor_infos.contains_key(name)
    }
    fn tensor(&mut self, name: &str) -> Result<QTensor> {
        self.ct.tensor(self.reader, name, &Device::Cpu)
    }
    fn f32(&mut self, name: &str) -> Result<Tensor> {
        dequantize(&self.tensor(name)?)
    }
    fn norm(&mut self, name: &str, eps: f64) -> Result<Norm> {
        Ok(Norm { weight: self.f32(name)?, eps: eps as f32 })
    }
    fn opt_norm(&mut self, name: &str, eps: f64) -> Result<Option<Norm>> {
        if self.has(name) { self.norm(name, eps).map(Some) } else { Ok(None) }
    }
    fn linear(&mut self, name: &str) -> Result<Linear> {
        let bias_name = name.replace(".weight", ".bias");
        let bias = if self.has(&bias_name) { Some(self.f32(&bias_name)?) } else { None };
        Linear::new(Arc::new(self.tensor(name)?), bias, self.fast)
    }
}

impl Decoder {
    /// Builds the model of `arch` (llama, mistral, qwen2, qwen3, phi3,
    /// gemma3) with positions up to `max_positions`.
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        arch: &str,
        max_positions: usize,
    ) -> Result<Decoder> {
        Self::load(ct, reader, arch, max_positions, true)
    }

    pub(crate) fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        arch: &str,
        max_positions: usize,
        fast: bool,
    ) -> Result<Decoder> {
        let mut g = Gguf { ct, reader, arch, fast };
        let hidden = g.u32("embedding_length")?;
        let heads = g.u32("attention.head_count")?;
        let kv_heads = g.u32("attention.head_count_kv").unwrap_or(heads);
        let head_dim = g.u32("attention.key_length").unwrap_or(hidden / heads);
        let rope_dim = g.u32("rope.dimension_count").unwrap_or(head_dim).min(head_dim);
        let gemma = arch == "gemma3";
        let cfg = Config {
            layers: g.u32("block_count")?,
            heads,
            kv_heads,
            head_dim,
            rope_dim,
            rope_base: g.f32_or("rope.freq_base", if gemma { 1_000_000.0 } else { 10_000.0 })?,
            rope_base_local: gemma.then(|| g.f32_or("rope.local_freq_base", 10_000.0)).transpose()?,
            // llama.cpp's llama_model_rope_type: GGUF llama weights are
            // permuted for interleaved pairs, the others are not.
            neox: arch != "llama" && arch != "mistral",
            eps: g.f32_or("attention.layer_norm_rms_epsilon", 1e-6)? as f64,
            embed_scale: gemma.then(|| (hidden as f64).sqrt()),
            gelu: gemma,
            sliding_window: if gemma { g.u32("attention.sliding_window").ok() } else { None },
            global_every: if gemma { g.u32("attention.sliding_window_type").unwrap_or(6) } else { 1 },
            scale: 1.0 / (head_dim as f64).sqrt(),
        };
        if heads % kv_heads != 0 {
            candle_core::bail!("{heads} attention heads do not divide into {kv_heads} key/value heads");
        }
        // Llama 3.1+ ship per-frequency scaling factors as a tensor.
        let rope_factors = if g.has("rope_freqs.weight") { Some(g.f32("rope_freqs.weight")?.to_vec1::<f32>()?) } else { None };
        let mut ropes = vec![rope_tables(cfg.rope_dim, cfg.rope_base, rope_factors.as_deref(), max_positions)?];
        if let Some(base) = cfg.rope_base_local {
            ropes.push(rope_tables(cfg.rope_dim, base, None, max_positions)?);
        }

        let eps = cfg.eps;
        let embed = g.linear("token_embd.weight")?;
        let norm = g.norm("output_norm.weight", eps)?;
        let output = if g.has("output.weight") { g.linear("output.weight")? } else { embed.clone() };
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let p = format!("blk.{i}");
            // Projections that share their input run as one stacked
            // matrix where their blocks allow: one pass over the input and
            // one parallel region instead of three (or two).
            let qkv = if g.has(&format!("{p}.attn_qkv.weight")) {
                Qkv::Fused(g.linear(&format!("{p}.attn_qkv.weight"))?)
            } else {
                let q = g.linear(&format!("{p}.attn_q.weight"))?;
                let k = g.linear(&format!("{p}.attn_k.weight"))?;
                let v = g.linear(&format!("{p}.attn_v.weight"))?;
                match Linear::stack(&[&q, &k, &v])? {
                    Some(qkv) => Qkv::Fused(qkv),
                    None => Qkv::Separate { q, k, v },
                }
            };
            let gate_up = if g.has(&format!("{p}.ffn_gate.weight")) {
                let gate = g.linear(&format!("{p}.ffn_gate.weight"))?;
                let up = g.linear(&format!("{p}.ffn_up.weight"))?;
                match Linear::stack(&[&gate, &up])? {
                    Some(both) => GateUp::Fused(both),
                    None => GateUp::Separate { gate, up },
                }
            } else {
                GateUp::Fused(g.linear(&format!("{p}.ffn_up.weight"))?)
            };
            let global = (i + 1) % cfg.global_every == 0;
            let window = if global { None } else { cfg.sliding_window };
            layers.push(Layer {
                attn_norm: g.norm(&format!("{p}.attn_norm.weight"), eps)?,
                qkv,
                q_norm: g.opt_norm(&format!("{p}.attn_q_norm.weight"), eps)?,
                k_norm: g.opt_norm(&format!("{p}.attn_k_norm.weight"), eps)?,
                o: g.linear(&format!("{p}.attn_output.weight"))?,
                post_attn_norm: g.opt_norm(&format!("{p}.post_attention_norm.weight"), eps)?,
                ffn_norm: g.norm(&format!("{p}.ffn_norm.weight"), eps)?,
                gate_up,
                down: g.linear(&format!("{p}.ffn_down.weight"))?,
                post_ffn_norm: g.opt_norm(&format!("{p}.post_ffw_norm.weight"), eps)?,
                window,
                rope: if window.is_some() && ropes.len() > 1 { 1 } else { 0 },
                cache: KvCache { k: None, v: None, len: 0 },
            });
        }
        Ok(Decoder { cfg, embed, layers, norm, output, ropes, max_positions })
    }

    /// Every matrix of the model, the output layer first.
    fn linears(&self) -> Vec<&Linear> {
        let mut all: Vec<&Linear> = vec![&self.output];
        for l in &self.layers {
            match &l.qkv {
                Qkv::Separate { q, k, v } => all.extend([q, k, v]),
                Qkv::Fused(w) => all.push(w),
            }
            match &l.gate_up {
                GateUp::Separate { gate, up } => all.extend([gate, up]),
                GateUp::Fused(w) => all.push(w),
            }
            all.extend([&l.o, &l.down]);
        }
        all
    }

    /// Whether [`Decoder::forward_each`] is exact: every matrix runs on
    /// ask's kernels for a few rows (not so for types only candle runs).
    pub fn rows_exact(&self) -> bool {
        self.linears().iter().all(|l| l.rows_exact())
    }

    /// Whether drafted tokens are cheap to check: most of the weights'
    /// bytes run on kernels that take extra activation rows for a fraction
    /// of a pass ([`Linear::wide`]). On the AVX2 kernels a second row
    /// costs nearly a whole pass, so drafts slow decode there even when
    /// most are accepted.
    pub fn drafts_pay(&self) -> bool {
        let linears = self.linears();
        let bytes = |wide: bool| -> usize { linears.iter().filter(|l| l.wide() == wide).map(|l| l.weight_bytes()).sum() };
        bytes(true) > bytes(false)
    }

    /// Prepares every weight's kernels now (candle's tiles for K-quants,
    /// see [`Linear::warm`]), the layers in parallel, so that the first
    /// prompt does not pay for it on one core.
    pub fn warm(&self) -> Result<()> {
        use rayon::prelude::*;
        self.linears().par_iter().try_for_each(|w| w.warm())
    }

    /// Forgets every cached position.
    pub fn clear_cache(&mut self) {
        for l in &mut self.layers {
            l.cache = KvCache { k: None, v: None, len: 0 };
        }
    }

    /// Runs `ids` (1, s) at position `pos`; returns the logits of the last
    /// position, shape (vocab,). Position 0 starts a new sequence.
    ///
    /// The whole prompt goes through each layer at once, so every weight is
    /// dequantized once per prompt and multiplied by all its rows in sgemm;
    /// only attention runs in query chunks (see [`attend`]).
    pub fn forward(&mut self, ids: &Tensor, pos: usize) -> Result<Tensor> {
        let (_, s) = ids.dims2()?;
        let x = self.hidden(ids, pos)?;
        let last = x.narrow(1, s - 1, 1)?;
        self.output.forward(&self.norm.forward(&last)?)?.flatten_all()
    }

    /// The logits of every position of `ids` (1, s) run at `pos`, shape
    /// (s, vocab). With s at most [`VERIFY_ROWS`], row i is bit for bit
    /// what running the first i + 1 tokens one at a time gives: checking
    /// drafted tokens in one pass changes no greedy choice.
    pub fn forward_each(&mut self, ids: &Tensor, pos: usize) -> Result<Tensor> {
        let (_, s) = ids.dims2()?;
        let x = self.hidden(ids, pos)?;
        let logits = self.output.forward(&self.norm.forward(&x)?)?;
        logits.reshape((s, ()))
    }

    /// Forgets the cached positions from `len` on (drafted tokens that
    /// were not kept, or a prompt's tail another prompt does not share).
    pub fn truncate(&mut self, len: usize) {
        for l in &mut self.layers {
            l.cache.len = l.cache.len.min(len);
        }
    }

    /// Positions the KV cache holds.
    pub fn cached(&self) -> usize {
        self.layers.iter().map(|l| l.cache.len).min().unwrap_or(0)
    }

    /// The first `len` cached positions' keys and values, a (k, v) pair of
    /// (1, kv_heads, len, head_dim) tensors per layer, for
    /// [`Decoder::restore`] in another process.
    pub fn snapshot(&self, len: usize) -> Result<Vec<(Tensor, Tensor)>> {
        if len == 0 || len > self.cached() {
            candle_core::bail!("{len} positions asked of a cache holding {}", self.cached());
        }
        let take = |t: &Option<Tensor>| t.as_ref().expect("cache holds positions").narrow(2, 0, len)?.contiguous();
        self.layers.iter().map(|l| Ok((take(&l.cache.k)?, take(&l.cache.v)?))).collect()
    }

    /// Sets the KV cache to a [`Decoder::snapshot`] of this model: the next
    /// prompt may start at the snapshot's length. Refuses one whose layer
    /// count or shapes are not this model's.
    pub fn restore(&mut self, kv: Vec<(Tensor, Tensor)>) -> Result<()> {
        if kv.len() != self.layers.len() {
            candle_core::bail!("a snapshot of {} layers for a model of {}", kv.len(), self.layers.len());
        }
        let len = kv[0].0.dim(2)?;
        let want = (1, self.cfg.kv_heads, len, self.cfg.head_dim);
        if len == 0 || len > self.max_positions || kv.iter().any(|(k, v)| k.dims4().ok() != Some(want) || v.dims4().ok() != Some(want) || k.dtype() != DType::F32 || v.dtype() != DType::F32) {
            candle_core::bail!("a snapshot whose keys and values are not (1, {}, n, {}) f32", want.1, want.3);
        }
        for (l, (k, v)) in self.layers.iter_mut().zip(kv) {
            l.cache = KvCache { k: Some(k), v: Some(v), len };
        }
        Ok(())
    }

    /// The last layer's output for `ids` at `pos`, (1, s, hidden).
    fn hidden(&mut self, ids: &Tensor, pos: usize) -> Result<Tensor> {
        if pos == 0 {
            self.clear_cache();
        }
        let (_, s) = ids.dims2()?;
        if s == 0 {
            candle_core::bail!("no tokens to run");
        }
        if pos + s > self.max_positions {
            candle_core::bail!("{} positions exceed the context of {}", pos + s, self.max_positions);
        }
        let mut x = self.embed.embedding(ids)?;
        if let Some(scale) = self.cfg.embed_scale {
            x = (x * scale)?;
        }
        for layer in &mut self.layers {
            let rope = &self.ropes[layer.rope];
            let h = layer.attn_norm.forward(&x)?;
            let h = attention(&self.cfg, layer, rope, &h, pos)?;
            let h = match &layer.post_attn_norm {
                Some(n) => n.forward(&h)?,
                None => h,
            };
            x = (x + h)?;
            let h = layer.ffn_norm.forward(&x)?;
            let gate_up = match &layer.gate_up {
                GateUp::Separate { gate, up } => Tensor::cat(&Linear::forward_many(&[gate, up], &h)?, D::Minus1)?,
                GateUp::Fused(w) => w.forward(&h)?,
            };
            let h = layer.down.forward(&ops::gated(&gate_up, self.cfg.gelu)?)?;
            let h = match &layer.post_ffn_norm {
                Some(n) => n.forward(&h)?,
                None => h,
            };
            x = (x + h)?;
        }
        Ok(x)
    }
}

fn attention(cfg: &Config, layer: &mut Layer, rope: &Rope, x: &Tensor, pos: usize) -> Result<Tensor> {
    let (b, s, _) = x.dims3()?;
    let (h, kvh, d) = (cfg.heads, cfg.kv_heads, cfg.head_dim);
    let (q, k, v) = match &layer.qkv {
        Qkv::Separate { q, k, v } => {
            let mut qkv = Linear::forward_many(&[q, k, v], x)?.into_iter();
            let mut next = || qkv.next().expect("three outputs");
            (next(), next(), next())
        }
        Qkv::Fused(w) => {
            let qkv = w.forward(x)?;
            (qkv.narrow(D::Minus1, 0, h * d)?, qkv.narrow(D::Minus1, h * d, kvh * d)?, qkv.narrow(D::Minus1, (h + kvh) * d, kvh * d)?)
        }
    };
    let mut q = q.reshape((b, s, h, d))?;
    let mut k = k.reshape((b, s, kvh, d))?;
    if let Some(n) = &layer.q_norm {
        q = n.forward(&q.contiguous()?)?;
    }
    if let Some(n) = &layer.k_norm {
        k = n.forward(&k.contiguous()?)?;
    }
    let q = apply_rope(cfg, rope, &q.transpose(1, 2)?.contiguous()?, pos)?;
    let k = apply_rope(cfg, rope, &k.transpose(1, 2)?.contiguous()?, pos)?;
    let v = v.reshape((b, s, kvh, d))?.transpose(1, 2)?;
    layer.cache.append(&k, &v)?;
    let (kc, vc) = (layer.cache.k.as_ref().expect("appended"), layer.cache.v.as_ref().expect("appended"));
    let y = attend(&(q * cfg.scale)?.contiguous()?, kc, vc, pos, layer.window)?;
    let y = y.transpose(1, 2)?.reshape((b, s, h * d))?;
    layer.o.forward(&y)
}

/// softmax(q·kᵀ)·v for queries `q` (1, h, s, d), already scaled, at
/// positions `pos..pos + s`, over the KV cache `k`, `v` (1, kv_heads,
/// capacity, d) filled up to `pos + s`; returns (1, h, s, d).
///
/// Each task takes [`ATTN_CHUNK`] queries of one head: one sgemm for the
/// scores against the keys they may see (up to the chunk's last query,
/// from the window's start on a sliding-window layer), a softmax that
/// leaves out the keys past each query ([`ops::causal_softmax`]), and one
/// sgemm by the values. Grouped query heads read their K/V head in place.
/// Against candle's matmul, mask and softmax ops this allocates nothing
/// per layer but the output, computes 3% of masked scores rather than 25%
/// (512-query chunks) and runs exp vectorized.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, pos: usize, window: Option<usize>) -> Result<Tensor> {
    let (_, h, s, d) = q.dims4()?;
    let (_, kvh, cap, _) = k.dims4()?;
    let groups = h / kvh;
    let (qg, ql) = q.storage_and_layout();
    let (kg, kl) = k.storage_and_layout();
    let (vg, vl) = v.storage_and_layout();
    // Raw pointers as integers, to share among tasks: q is (h, s, d), the
    // caches (kvh, cap, d), all contiguous (checked here) and of those
    // lengths (checked by the slices taken).
    if !q.is_contiguous() || !k.is_contiguous() || !v.is_contiguous() {
        candle_core::bail!("attention wants contiguous queries and caches");
    }
    let qp = ops::cpu_f32s(&qg, ql, h * s * d)?.as_ptr() as usize;
    let kp = ops::cpu_f32s(&kg, kl, kvh * cap * d)?.as_ptr() as usize;
    let vp = ops::cpu_f32s(&vg, vl, kvh * cap * d)?.as_ptr() as usize;
    let mut y = vec![0f32; h * s * d];
    let yp = y.as_mut_ptr() as usize;
    thread_local! {
        static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // A few queries (a decode step, drafted tokens being checked) run one
    // at a time, each exactly as a lone decode step runs it.
    let chunk = if s <= VERIFY_ROWS { 1 } else { ATTN_CHUNK };
    let task = |(hq, c0): (usize, usize)| {
        let len = chunk.min(s - c0);
        let first = pos + c0;
        let end = first + len;
        let lo = window.map_or(0, |w| (first + 1).saturating_sub(w));
        let n = end - lo;
        let kv = (hq / groups) * cap * d + lo * d;
        SCORES.with_borrow_mut(|sc| {
            sc.resize(len * n, 0.0);
            // SAFETY: every pointer and extent stays inside the buffers
            // taken above (queries c0..c0 + len of head hq; keys and values
            // lo..end < pos + s <= cap of its K/V head; output rows of
            // (hq, c0..c0 + len), which no other task writes); the storage
            // guards are held until every task has returned.
            unsafe {
                gemm::gemm(
                    len, n, d,
                    sc.as_mut_ptr(), 1, n as isize, false,
                    (qp as *const f32).add((hq * s + c0) * d), 1, d as isize,
                    (kp as *const f32).add(kv), d as isize, 1,
                    0.0, 1.0, false, false, false, gemm::Parallelism::None,
                );
                ops::causal_softmax(sc, n, len, first - lo, window);
                gemm::gemm(
                    len, d, n,
                    (yp as *mut f32).add((hq * s + c0) * d), 1, d as isize, false,
                    sc.as_ptr(), 1, n as isize,
                    (vp as *const f32).add(kv), 1, d as isize,
                    0.0, 1.0, false, false, false, gemm::Parallelism::None,
                );
            }
        });
    };
    let tasks: Vec<(usize, usize)> = (0..h).flat_map(|hq| (0..s).step_by(chunk).map(move |c0| (hq, c0))).collect();
    // One decode step over a short context is less work than waking a thread.
    if s == 1 && h * (pos + 1) < 16_384 {
        tasks.into_iter().for_each(task);
    } else {
        use rayon::prelude::*;
        tasks.into_par_iter().for_each(task);
    }
    drop((qg, kg, vg));
    Tensor::from_vec(y, (1, h, s, d), &Device::Cpu)
}

fn apply_rope(cfg: &Config, rope: &Rope, x: &Tensor, pos: usize) -> Result<Tensor> {
    let s = x.dim(2)?;
    let cos = rope.cos.narrow(0, pos, s)?;
    let sin = rope.sin.narrow(0, pos, s)?;
    let rotate = |x: &Tensor| if cfg.neox { candle_nn::rotary_emb::rope(x, &cos, &sin) } else { candle_nn::rotary_emb::rope_i(x, &cos, &sin) };
    if cfg.rope_dim == cfg.head_dim {
        return rotate(x);
    }
    // Partial rotary embedding: only the first rope_dim features turn.
    let turned = rotate(&x.narrow(D::Minus1, 0, cfg.rope_dim)?.contiguous()?)?;
    Tensor::cat(&[&turned, &x.narrow(D::Minus1, cfg.rope_dim, cfg.head_dim - cfg.rope_dim)?], D::Minus1)?.contiguous()
}

fn rope_tables(dim: usize, base: f32, factors: Option<&[f32]>, positions: usize) -> Result<Rope> {
    let inv: Vec<f32> = (0..dim / 2)
        .map(|i| {
            let f = 1.0 / base.powf(2.0 * i as f32 / dim as f32);
            f / factors.and_then(|fs| fs.get(i)).copied().unwrap_or(1.0)
        })
        .collect();
    let mut angles = Vec::with_capacity(positions * inv.len());
    for p in 0..positions {
        angles.extend(inv.iter().map(|f| p as f32 * f));
    }
    let angles = Tensor::from_vec(angles, (positions, dim / 2), &Device::Cpu)?;
    Ok(Rope { cos: angles.cos()?, sin: angles.sin()? })
}

/// How far one way of running a model moves its next-token distributions
/// from the same weights dequantized to f32 (see [`drift`]).
#[derive(Debug, Clone)]
pub struct Drift {
    /// The way measured.
    pub way: &'static str,
    /// KL divergence from the f32 distribution: mean, median, p99, max.
    pub kl: [f64; 4],
    /// Positions whose most likely token is f32's.
    pub top1: f64,
    /// Positions compared.
    pub positions: usize,
}

/// Every position of `prompts` (token ids) run three ways through the GGUF
/// model at `path`: with its matmuls in f32 on the dequantized weights (the
/// reference), whole prompts through this CPU's prompt kernels, and
/// [`VERIFY_ROWS`] tokens at a time, which runs the decode kernels; the two
/// measured against the reference. A measurement for `examples/prefill-drift`.
pub fn drift(path: &std::path::Path, prompts: &[Vec<u32>]) -> Result<Vec<Drift>> {
    let open = || -> Result<(gguf_file::Content, std::io::BufReader<std::fs::File>)> {
        let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
        let ct = gguf_file::Content::read(&mut r)?;
        Ok((ct, r))
    };
    let run = |fast: bool, step: usize| -> Result<Vec<Vec<f32>>> {
        let (ct, mut r) = open()?;
        let arch = match ct.metadata.get("general.architecture") {
            Some(Value::String(a)) => a.clone(),
            _ => candle_core::bail!("{}: no general.architecture", path.display()),
        };
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut model = Decoder::load(&ct, &mut r, &arch, longest.max(1), fast)?;
        prompts
            .iter()
            .map(|ids| {
                let mut out = Vec::new();
                for (i, piece) in ids.chunks(step.max(1)).enumerate() {
                    let t = Tensor::new(piece, &Device::Cpu)?.unsqueeze(0)?;
                    out.extend(model.forward_each(&t, i * step)?.flatten_all()?.to_vec1::<f32>()?);
                }
                Ok(out)
            })
            .collect()
    };
    let log_softmax = |v: &[f32]| -> Vec<f64> {
        let m = v.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let z = v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
        v.iter().map(|&x| x as f64 - z).collect()
    };
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
    let whole = prompts.iter().map(Vec::len).max().unwrap_or(1);
    let reference = run(false, whole)?;
    let compare = |way: &'static str, logits: Vec<Vec<f32>>| -> Drift {
        let mut kls = Vec::new();
        let mut same = 0;
        for ((a, b), ids) in reference.iter().zip(&logits).zip(prompts) {
            let vocab = a.len() / ids.len().max(1);
            for (p, q) in a.chunks_exact(vocab).zip(b.chunks_exact(vocab)) {
                let (lp, lq) = (log_softmax(p), log_softmax(q));
                kls.push(lp.iter().zip(&lq).map(|(x, y)| x.exp() * (x - y)).sum::<f64>());
                same += usize::from(argmax(p) == argmax(q));
            }
        }
        kls.sort_by(f64::total_cmp);
        let at = |q: usize| kls.get((kls.len().saturating_sub(1)) * q / 100).copied().unwrap_or(0.0);
        let mean = kls.iter().sum::<f64>() / kls.len().max(1) as f64;
        Drift { way, kl: [mean, at(50), at(99), at(100)], top1: same as f64 / kls.len().max(1) as f64, positions: kls.len() }
    };
    Ok(vec![compare("whole prompts, this CPU's prompt kernels", run(true, whole)?), compare("fed VERIFY_ROWS tokens at a time, the decode kernels", run(true, VERIFY_ROWS)?)])
}

#[cfg(test)]
mod tests;

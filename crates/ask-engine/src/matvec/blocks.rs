//! The blocks the kernels read: GGML's weight layouts (ggml-common.h)
//! and the activation rows quantized to match them, with each block type's
//! values as integers, scale and bias ([`Block`]), the reference every
//! kernel is checked against.

use half::f16;

/// Values per block, for weights and activations alike.
pub const QK: usize = 32;

/// One activation block: 32 values as `d · qs[i]`, and `s = d · Σ qs`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ActBlock {
    pub(super) d: f32,
    pub(super) s: f32,
    pub(super) qs: [i8; QK],
}

/// Quantizes a row (length a multiple of [`QK`]) to activation blocks.
pub fn quantize_row(x: &[f32], out: &mut Vec<ActBlock>) {
    debug_assert_eq!(x.len() % QK, 0);
    out.clear();
    out.extend(x.chunks_exact(QK).map(|xs| {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK];
        let mut sum = 0i32;
        for (q, v) in qs.iter_mut().zip(xs) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        ActBlock { d, s: d * sum as f32, qs }
    }));
}

/// Values per K-quant block (and per activation block for them).
pub const QK_K: usize = 256;

/// One activation block for K-quant weights: 256 values as `d · qs[i]`,
/// and the sums of `qs` over each 16, which fold in the weights' offsets.
/// One scale per 256 lets a weight block's products add up as integers,
/// with one float multiply per block: per 32 values, as [`ActBlock`] does,
/// the float work alone made K-quant decode slower than candle's kernels.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ActK {
    pub(super) d: f32,
    pub(super) qs: [i8; QK_K],
    pub(super) sums: [i16; QK_K / 16],
}

impl ActK {
    /// 256 values (`xs.len()`) quantized.
    pub(super) fn quantize(xs: &[f32]) -> ActK {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let qs: [i8; QK_K] = std::array::from_fn(|i| (xs[i] * id).round() as i8);
        let sums = std::array::from_fn(|j| qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum());
        ActK { d, qs, sums }
    }
}

/// A row of activations quantized for every kind of weight block.
#[derive(Default)]
pub struct Acts {
    pub(super) blocks: Vec<ActBlock>,
    /// Empty when the row is not a whole number of K-quant blocks.
    pub(super) k: Vec<ActK>,
}

impl Acts {
    pub fn quantize(&mut self, x: &[f32]) {
        quantize_row(x, &mut self.blocks);
        self.k.clear();
        if x.len().is_multiple_of(QK_K) {
            self.k.extend(x.chunks_exact(QK_K).map(ActK::quantize));
        }
    }

    /// Values in the row.
    pub(super) fn len(&self) -> usize {
        self.blocks.len() * QK
    }
}

// GGML's block layouts (ggml-common.h). In the 4- and 5-bit ones, byte j
// holds value j in its low nibble and value j + 16 in its high nibble.

#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct BlockQ4_0 {
    pub(super) d: f16,
    pub(super) qs: [u8; QK / 2],
}

#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct BlockQ4_1 {
    pub(super) d: f16,
    pub(super) m: f16,
    pub(super) qs: [u8; QK / 2],
}

#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct BlockQ5_0 {
    pub(super) d: f16,
    /// Fifth bit of value j in bit j (little-endian).
    pub(super) qh: [u8; 4],
    pub(super) qs: [u8; QK / 2],
}

#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct BlockQ8_0 {
    pub(super) d: f16,
    pub(super) qs: [i8; QK],
}

/// 256 values in eight runs of 32, each with a 6-bit scale and minimum.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct BlockQ4K {
    pub(super) d: f16,
    pub(super) dmin: f16,
    pub(super) scales: [u8; 12],
    pub(super) qs: [u8; 128],
}

/// 256 six-bit values (stored less 32) in 16 runs of 16 with 8-bit scales.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct BlockQ6K {
    pub(super) ql: [u8; 128],
    pub(super) qh: [u8; 64],
    pub(super) scales: [i8; 16],
    pub(super) d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144 && std::mem::size_of::<BlockQ6K>() == 210);

/// A block type: `SUBS` runs of [`QK`] values, each stored as integers and
/// two floats that make them real values, `scale · int + bias`.
pub(super) trait Block: Copy + Send + Sync + 'static {
    /// Runs of QK values in a block: 1, or 8 for the K-quants' 256.
    const SUBS: usize = 1;
    /// Run j's integers (unsigned for the 4- and 5-bit types, signed for
    /// Q8_0; the K-quants' times their integer sub-scales), its scale and
    /// its bias (Q4_0's -8·d, Q4_1's minimum, Q5_0's -16·d, Q4_K's
    /// -dmin·m), added to every value. Against an activation block the
    /// bias adds `bias · Σ d_a·q_a = bias · s`.
    fn sub(&self, j: usize) -> ([i32; QK], f32, f32);
}

/// Byte j's low nibble is value j, its high nibble value j + 16.
pub(super) fn nibbles(qs: &[u8; QK / 2]) -> [i32; QK] {
    let mut q = [0i32; QK];
    for j in 0..QK / 2 {
        q[j] = (qs[j] & 0x0f) as i32;
        q[j + QK / 2] = (qs[j] >> 4) as i32;
    }
    q
}

impl Block for BlockQ4_0 {
    fn sub(&self, _: usize) -> ([i32; QK], f32, f32) {
        let d = self.d.to_f32();
        (nibbles(&self.qs), d, -8.0 * d)
    }
}

impl Block for BlockQ4_1 {
    fn sub(&self, _: usize) -> ([i32; QK], f32, f32) {
        (nibbles(&self.qs), self.d.to_f32(), self.m.to_f32())
    }
}

impl Block for BlockQ5_0 {
    fn sub(&self, _: usize) -> ([i32; QK], f32, f32) {
        let mut q = nibbles(&self.qs);
        let qh = u32::from_le_bytes(self.qh);
        for (j, q) in q.iter_mut().enumerate() {
            *q |= (((qh >> j) & 1) << 4) as i32;
        }
        let d = self.d.to_f32();
        (q, d, -16.0 * d)
    }
}

impl Block for BlockQ8_0 {
    fn sub(&self, _: usize) -> ([i32; QK], f32, f32) {
        (self.qs.map(i32::from), self.d.to_f32(), 0.0)
    }
}

/// Run j's 6-bit scale and minimum, as Q4_K packs them in 12 bytes: the
/// first four runs in the low 6 bits of bytes 0-3 and 4-7, the last four in
/// the nibbles of bytes 8-11 with their top 2 bits in bytes 0-7's top bits.
pub(super) fn q4k_scale_min(scales: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        ((scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
    }
}

impl Block for BlockQ4K {
    const SUBS: usize = 8;
    fn sub(&self, j: usize) -> ([i32; QK], f32, f32) {
        // Bytes 32g..32g + 32 hold run 2g in their low nibbles and run
        // 2g + 1 in their high ones.
        let (sc, m) = q4k_scale_min(&self.scales, j);
        let q = std::array::from_fn(|i| self.value(QK * j + i) as i32 * sc as i32);
        (q, self.d.to_f32(), -self.dmin.to_f32() * m as f32)
    }
}

impl BlockQ4K {
    /// Value v (0..256) as stored, before its run's scale and minimum.
    pub(super) fn value(&self, v: usize) -> u8 {
        let (j, i) = (v / QK, v % QK);
        (self.qs[32 * (j / 2) + i] >> (4 * (j % 2))) & 0x0f
    }
}

impl Block for BlockQ6K {
    const SUBS: usize = 8;
    fn sub(&self, j: usize) -> ([i32; QK], f32, f32) {
        // A scale covers 16 values.
        let q = std::array::from_fn(|i| {
            let v = QK * j + i;
            (self.value(v) as i32 - 32) * self.scales[v / 16] as i32
        });
        (q, self.d.to_f32(), 0.0)
    }
}

impl BlockQ6K {
    /// Value v (0..256) as stored, 32 above the real one, before its
    /// run's scale.
    pub(super) fn value(&self, v: usize) -> u8 {
        // Each half (128 values) has 64 bytes of low nibbles and 32 of
        // high bit pairs: run k of 32 in the half takes its low 4 bits
        // from bytes 32·(k % 2).. (nibble k / 2) and its high 2 from bit
        // pair k of the half's qh bytes.
        let (j, i) = (v / QK, v % QK);
        let (n, k) = (j / 4, j % 4);
        let ql = self.ql[64 * n + 32 * (k % 2) + i];
        let qh = self.qh[32 * n + i];
        ((ql >> (4 * (k / 2))) & 0x0f) | (((qh >> (2 * k)) & 3) << 4)
    }
}

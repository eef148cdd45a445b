//! Decode's matrix-vector products, on the weights' own 4-, 5-, 6- and
//! 8-bit blocks.
//!
//! Decode multiplies one activation row by every weight of the model for
//! each token, so its speed is the speed of reading the weights. candle 0.11
//! has only scalar code for Q4_1 and Q5_0 (SmolLM2's and Gemma 3's main
//! types), and moving them to Q8_0 reads 1.7x the bytes; its K-quant decode
//! reads Q4_K from tiles a third larger than the blocks. These kernels read
//! the blocks as stored, in the way llama.cpp does: the activation row is
//! quantized once to 8-bit blocks of 32 (scale `d` and `s = d·Σq`), every
//! block's integer dot product runs in AVX2 (`maddubs` on unsigned weight
//! nibbles against signed activations), and the block's offset (Q4_0's 8,
//! Q4_1's minimum, Q5_0's 16) is folded in through `s`, once per block.
//! The K-quants (Q4_K, Q6_K: 256 values with sub-scales per 32 or 16) read
//! the row quantized a second way, in blocks of 256 with sums per 16
//! ([`ActK`]), so that a block's products add up as integers.
//! Each block also asks for the bytes 8 KiB ahead of it to be fetched:
//! without that, decode on a 2-core machine read weights at 7.7 GB/s of the
//! 22 GB/s the memory gives; with it, 14.6 GB/s (SmolLM2 tg128 from 69 to
//! 116 tokens/s; 320 bytes ahead gave 80, 2,560 gave 108, 16 KiB 111; for
//! Qwen2.5-1.5B Q4_K_M, 4 KiB gave 30.4 tokens/s, 8 KiB 30.9, 16 KiB 28.2).
//! The SIMD code is AVX2 (x86-64-v3, ask's build baseline), with 512-bit
//! VNNI kernels chosen at run time where the CPU has them (`avx512`: on
//! SmolLM2's Q4_1 and Q8_0, tg128 went from 130 to 211 tokens/s on an
//! AVX-512 Xeon, runs alternated); other targets get a scalar fallback,
//! which `quant::Linear` avoids by keeping candle's NEON kernels there.
//! The rows are shared among candle's spinning thread pool, one parallel
//! region per call; callers fuse the products that share an input (q, k, v;
//! gate, up) into one matrix, or one call ([`QMatrix::matvec_parts`]), so a
//! layer needs four regions, not seven.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod avx512;
mod tiles;
pub use tiles::PromptTiles;

/// Values per block, for weights and activations alike.
pub const QK: usize = 32;

/// One activation block: 32 values as `d · qs[i]`, and `s = d · Σ qs`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ActBlock {
    d: f32,
    s: f32,
    qs: [i8; QK],
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
/// decode on Qwen2.5-1.5B Q4_K_M spent so long on float work that it ran
/// at 19 tokens/s against candle's 23.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ActK {
    d: f32,
    qs: [i8; QK_K],
    sums: [i16; QK_K / 16],
}

impl ActK {
    /// 256 values (`xs.len()`) quantized.
    fn quantize(xs: &[f32]) -> ActK {
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
    blocks: Vec<ActBlock>,
    /// Empty when the row is not a whole number of K-quant blocks.
    k: Vec<ActK>,
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
    fn len(&self) -> usize {
        self.blocks.len() * QK
    }
}

// GGML's block layouts (ggml-common.h). In the 4- and 5-bit ones, byte j
// holds value j in its low nibble and value j + 16 in its high nibble.

#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ4_0 {
    d: f16,
    qs: [u8; QK / 2],
}

#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ4_1 {
    d: f16,
    m: f16,
    qs: [u8; QK / 2],
}

#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ5_0 {
    d: f16,
    /// Fifth bit of value j in bit j (little-endian).
    qh: [u8; 4],
    qs: [u8; QK / 2],
}

#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ8_0 {
    d: f16,
    qs: [i8; QK],
}

/// 256 values in eight runs of 32, each with a 6-bit scale and minimum.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ4K {
    d: f16,
    dmin: f16,
    scales: [u8; 12],
    qs: [u8; 128],
}

/// 256 six-bit values (stored less 32) in 16 runs of 16 with 8-bit scales.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ6K {
    ql: [u8; 128],
    qh: [u8; 64],
    scales: [i8; 16],
    d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144 && std::mem::size_of::<BlockQ6K>() == 210);

/// A block type: `SUBS` runs of [`QK`] values, each stored as integers and
/// two floats that make them real values, `scale · int + bias`.
trait Block: Copy + Send + Sync + 'static {
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
fn nibbles(qs: &[u8; QK / 2]) -> [i32; QK] {
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
fn q4k_scale_min(scales: &[u8; 12], j: usize) -> (u8, u8) {
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
    fn value(&self, v: usize) -> u8 {
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
    fn value(&self, v: usize) -> u8 {
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

/// One row's dot product, run by run, without SIMD.
fn dot_scalar<B: Block>(w: &[B], a: &[ActBlock]) -> f32 {
    let runs = w.iter().flat_map(|w| (0..B::SUBS).map(|j| w.sub(j)));
    runs.zip(a)
        .map(|((ints, scale, bias), a)| {
            let idot: i32 = ints.iter().zip(&a.qs).map(|(&q, &a)| q * a as i32).sum();
            scale * a.d * idot as f32 + bias * a.s
        })
        .sum()
}

/// [`dot_scalar`] against 256-value activation blocks.
fn dot_scalar_k<B: Block>(w: &[B], a: &[ActK]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            (0..B::SUBS)
                .map(|j| {
                    let (ints, scale, bias) = w.sub(j);
                    let qs = &a.qs[QK * j..QK * (j + 1)];
                    let idot: i32 = ints.iter().zip(qs).map(|(&q, &a)| q * a as i32).sum();
                    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                    a.d * (scale * idot as f32 + bias * sum as f32)
                })
                .sum::<f32>()
        })
        .sum()
}

/// A row of blocks as floats.
fn to_f32<B: Block>(w: &[B], out: &mut [f32]) {
    let runs = w.iter().flat_map(|w| (0..B::SUBS).map(|j| w.sub(j)));
    for ((ints, scale, bias), out) in runs.zip(out.chunks_exact_mut(QK)) {
        for (o, q) in out.iter_mut().zip(ints) {
            *o = scale * q as f32 + bias;
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// How far ahead of the block being read to prefetch (see the top).
    const PREFETCH: usize = 8192;

    /// Sum of the eight lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_movehdup_ps(x));
        _mm_cvtss_f32(x)
    }

    /// 32 nibbles as bytes 0..15: low nibbles first, then high ones.
    #[inline(always)]
    unsafe fn unpack_nibbles(qs: &[u8; QK / 2]) -> __m256i {
        let t = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
        let both = _mm256_insertf128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// Bit j of `bits` as 0x10 in byte j, 0 elsewhere.
    #[inline(always)]
    unsafe fn fifth_bits(bits: u32) -> __m256i {
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
        );
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    /// Eight partial sums of unsigned bytes times signed bytes, as floats.
    #[inline(always)]
    unsafe fn dot_u8_i8(q: __m256i, a: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(q, a);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    #[inline(always)]
    unsafe fn load_act(a: &ActBlock) -> __m256i {
        _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i)
    }

    /// Asks for the cache lines of a block `PREFETCH` bytes ahead.
    #[inline(always)]
    pub(super) unsafe fn prefetch<B>(w: &B) {
        let p = (w as *const B as *const i8).add(PREFETCH);
        for line in (0..std::mem::size_of::<B>()).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(p.add(line));
        }
    }

    /// Dot products of one row of 4- or 5-bit blocks with M activation
    /// rows: `values` unpacks a block to unsigned bytes, `scale_bias` gives
    /// its two floats; the biases are summed separately. Each activation
    /// row goes through the same operations in the same order whatever M
    /// is, so its result does not depend on the rows beside it.
    #[inline(always)]
    unsafe fn dot_unsigned<B: Block, const M: usize>(
        w: &[B],
        a: [&[ActBlock]; M],
        values: impl Fn(&B) -> __m256i,
        scale_bias: impl Fn(&B) -> (f32, f32),
    ) -> [f32; M] {
        assert!(a.iter().all(|a| a.len() == w.len()), "activation length");
        let mut acc = [_mm256_setzero_ps(); M];
        let mut offsets = [0f32; M];
        for (i, w) in w.iter().enumerate() {
            prefetch(w);
            let q = values(w);
            let (scale, bias) = scale_bias(w);
            for r in 0..M {
                let a = a[r].get_unchecked(i);
                let p = dot_u8_i8(q, load_act(a));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(scale * a.d), p, acc[r]);
                offsets[r] += bias * a.s;
            }
        }
        std::array::from_fn(|r| hsum(acc[r]) + offsets[r])
    }

    pub(super) fn dot_q4_0_avx2<const M: usize>(w: &[BlockQ4_0], a: [&[ActBlock]; M]) -> [f32; M] {
        // SAFETY: this module is compiled only where AVX2 and FMA are
        // enabled for the whole build; indexes are within the lengths
        // asserted.
        unsafe { dot_unsigned(w, a, |b| unpack_nibbles(&b.qs), |b| (b.d.to_f32(), -8.0 * b.d.to_f32())) }
    }

    pub(super) fn dot_q4_1_avx2<const M: usize>(w: &[BlockQ4_1], a: [&[ActBlock]; M]) -> [f32; M] {
        // SAFETY: as above.
        unsafe { dot_unsigned(w, a, |b| unpack_nibbles(&b.qs), |b| (b.d.to_f32(), b.m.to_f32())) }
    }

    pub(super) fn dot_q5_0_avx2<const M: usize>(w: &[BlockQ5_0], a: [&[ActBlock]; M]) -> [f32; M] {
        // SAFETY: as above.
        unsafe {
            dot_unsigned(
                w,
                a,
                |b| _mm256_or_si256(unpack_nibbles(&b.qs), fifth_bits(u32::from_le_bytes(b.qh))),
                |b| (b.d.to_f32(), -16.0 * b.d.to_f32()),
            )
        }
    }

    /// Q4_K's eight 6-bit scales and eight minimums as bytes: 12 bytes
    /// unpacked as [`q4k_scale_min`] reads them, four at a time in u32s.
    #[inline(always)]
    pub(super) fn q4k_scales_mins(packed: &[u8; 12]) -> [u32; 4] {
        let w = |i: usize| u32::from_le_bytes(packed[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        let (w0, w1, w2) = (w(0), w(1), w(2));
        const LOW6: u32 = 0x3f3f_3f3f;
        const LOW4: u32 = 0x0f0f_0f0f;
        const TOP2: u32 = 0x0303_0303;
        [
            w0 & LOW6,
            (w2 & LOW4) | (((w0 >> 6) & TOP2) << 4),
            w1 & LOW6,
            ((w2 >> 4) & LOW4) | (((w1 >> 6) & TOP2) << 4),
        ]
    }

    /// Shuffles that spread 16-bit lane j of a 128-bit half (broadcast to
    /// both halves) over all 16 lanes.
    #[inline(always)]
    unsafe fn lane16(j: usize) -> __m256i {
        let b = (2 * j) as i8;
        _mm256_set1_epi16(i16::from_le_bytes([b as u8, b as u8 + 1]))
    }

    /// Q4_K: per run of 32, the nibbles' products with the activations
    /// (`maddubs`) times the run's scale (`madd`), summed as integers over
    /// the block; one FMA by `d · d_a` per block; the minimums against the
    /// activations' sums, also as integers. M activation rows share each
    /// block's unpacking, each row computed as it would be alone.
    pub(super) fn dot_q4k_avx2<const M: usize>(w: &[BlockQ4K], a: [&[ActK]; M]) -> [f32; M] {
        assert!(a.iter().all(|a| a.len() == w.len()), "activation length");
        // SAFETY: as above; loads stay inside the blocks.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); M];
            let mut acc_m = [_mm_setzero_ps(); M];
            let low = _mm256_set1_epi8(0x0f);
            for (i, w) in w.iter().enumerate() {
                prefetch(w);
                let sm = q4k_scales_mins(&w.scales);
                // Scales in lanes 0-7, minimums in 8-15.
                let sm = _mm256_cvtepu8_epi16(_mm_set_epi32(sm[3] as i32, sm[2] as i32, sm[1] as i32, sm[0] as i32));
                let (d, dmin) = (w.d.to_f32(), w.dmin.to_f32());
                for r in 0..M {
                    let a = a[r].get_unchecked(i);
                    let sums = _mm256_loadu_si256(a.sums.as_ptr() as *const __m256i);
                    // Sums per 32 values: adjacent pairs of the 16 sums.
                    let sums32 = _mm_hadd_epi16(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
                    let mins = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), sums32);
                    acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(dmin * a.d), _mm_cvtepi32_ps(mins), acc_m[r]);
                }
                let scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
                let mut sumi = [_mm256_setzero_si256(); M];
                for g in 0..4 {
                    let bytes = _mm256_loadu_si256(w.qs.as_ptr().add(32 * g) as *const __m256i);
                    let lo = _mm256_and_si256(bytes, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low);
                    let (s0, s1) = (_mm256_shuffle_epi8(scales, lane16(2 * g)), _mm256_shuffle_epi8(scales, lane16(2 * g + 1)));
                    for r in 0..M {
                        let a = a[r].get_unchecked(i);
                        let x0 = _mm256_loadu_si256(a.qs.as_ptr().add(64 * g) as *const __m256i);
                        let x1 = _mm256_loadu_si256(a.qs.as_ptr().add(64 * g + 32) as *const __m256i);
                        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), s0);
                        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), s1);
                        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p0, p1));
                    }
                }
                for r in 0..M {
                    let a = a[r].get_unchecked(i);
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
                }
            }
            std::array::from_fn(|r| {
                let m = _mm_add_ps(acc_m[r], _mm_movehl_ps(acc_m[r], acc_m[r]));
                let m = _mm_add_ss(m, _mm_movehdup_ps(m));
                hsum(acc[r]) - _mm_cvtss_f32(m)
            })
        }
    }

    /// Q6_K: the six-bit values rebuilt as unsigned bytes (0..63), their
    /// products with the activations times each 16 values' scale, summed as
    /// integers over the block, less 32 times the scales against the
    /// activations' sums; one FMA by `d · d_a` per block.
    pub(super) fn dot_q6k_avx2<const M: usize>(w: &[BlockQ6K], a: [&[ActK]; M]) -> [f32; M] {
        assert!(a.iter().all(|a| a.len() == w.len()), "activation length");
        // SAFETY: as for dot_q4k.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); M];
            let (low, pair) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
            for (i, w) in w.iter().enumerate() {
                prefetch(w);
                let d = w.d.to_f32();
                let sc8 = _mm_loadu_si128(w.scales.as_ptr() as *const __m128i);
                let sc16 = _mm256_cvtepi8_epi16(sc8);
                let mut sumi = [_mm256_setzero_si256(); M];
                for n in 0..2 {
                    let ql0 = _mm256_loadu_si256(w.ql.as_ptr().add(64 * n) as *const __m256i);
                    let ql1 = _mm256_loadu_si256(w.ql.as_ptr().add(64 * n + 32) as *const __m256i);
                    let qh = _mm256_loadu_si256(w.qh.as_ptr().add(32 * n) as *const __m256i);
                    let runs = [
                        _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_slli_epi16(_mm256_and_si256(qh, pair), 4)),
                        _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), pair), 4)),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), pair), 4),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), pair), 4),
                        ),
                    ];
                    for (k, q) in runs.into_iter().enumerate() {
                        let run = 4 * n + k;
                        // Scale 2·run for the run's first 16 values,
                        // 2·run + 1 for the rest.
                        let pick = _mm_set_epi64x(i64::from_le_bytes([2 * run as u8 + 1; 8]), i64::from_le_bytes([2 * run as u8; 8]));
                        let scales = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
                        for r in 0..M {
                            let x = _mm256_loadu_si256(a[r].get_unchecked(i).qs.as_ptr().add(32 * run) as *const __m256i);
                            sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), scales));
                        }
                    }
                }
                for r in 0..M {
                    let a = a[r].get_unchecked(i);
                    let sums = _mm256_loadu_si256(a.sums.as_ptr() as *const __m256i);
                    let offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, sums), 5);
                    let sumi = _mm256_sub_epi32(sumi[r], offset);
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(sumi), acc[r]);
                }
            }
            std::array::from_fn(|r| hsum(acc[r]))
        }
    }

    pub(super) fn dot_q8_0_avx2<const M: usize>(w: &[BlockQ8_0], a: [&[ActBlock]; M]) -> [f32; M] {
        assert!(a.iter().all(|a| a.len() == w.len()), "activation length");
        // SAFETY: as above.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); M];
            for (i, w) in w.iter().enumerate() {
                prefetch(w);
                let q = _mm256_loadu_si256(w.qs.as_ptr() as *const __m256i);
                let d = w.d.to_f32();
                // maddubs wants one unsigned side: |q| against a with q's sign.
                let abs = _mm256_sign_epi8(q, q);
                for r in 0..M {
                    let a = a[r].get_unchecked(i);
                    let p = dot_u8_i8(abs, _mm256_sign_epi8(load_act(a), q));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), p, acc[r]);
                }
            }
            std::array::from_fn(|r| hsum(acc[r]))
        }
    }

    /// Each type's kernel: the 512-bit one where the CPU runs it
    /// ([`super::avx512::available`], checked once), else the AVX2 one.
    macro_rules! tiered {
        ($($name:ident, $avx2:ident, $block:ty, $act:ty;)*) => {$(
            pub(super) fn $name<const M: usize>(w: &[$block], a: [&[$act]; M]) -> [f32; M] {
                if super::avx512::available() {
                    // SAFETY: the CPU has what it needs.
                    return unsafe { super::avx512::$name(w, a) };
                }
                $avx2(w, a)
            }
        )*};
    }
    tiered! {
        dot_q4_0, dot_q4_0_avx2, BlockQ4_0, ActBlock;
        dot_q4_1, dot_q4_1_avx2, BlockQ4_1, ActBlock;
        dot_q5_0, dot_q5_0_avx2, BlockQ5_0, ActBlock;
        dot_q8_0, dot_q8_0_avx2, BlockQ8_0, ActBlock;
        dot_q4k, dot_q4k_avx2, BlockQ4K, ActK;
        dot_q6k, dot_q6k_avx2, BlockQ6K, ActK;
    }
}

trait Kernel: Block {
    /// The activation blocks this type's kernel reads, one per block.
    type Act;
    fn acts(x: &Acts) -> &[Self::Act];
    /// One weight row's dot products with M activation rows; each result
    /// is bit for bit what M = 1 gives for that activation row.
    fn dot<const M: usize>(w: &[Self], a: [&[Self::Act]; M]) -> [f32; M];
    #[cfg(test)]
    fn scalar(w: &[Self], a: &[Self::Act]) -> f32;
}

macro_rules! kernel {
    ($block:ty, $simd:ident) => {
        kernel!($block, $simd, ActBlock, blocks, dot_scalar);
    };
    ($block:ty, $simd:ident, $act:ty, $field:ident, $scalar:ident) => {
        impl Kernel for $block {
            type Act = $act;
            fn acts(x: &Acts) -> &[$act] {
                &x.$field
            }
            fn dot<const M: usize>(w: &[Self], a: [&[$act]; M]) -> [f32; M] {
                #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
                return avx2::$simd(w, a);
                #[allow(unreachable_code)]
                std::array::from_fn(|r| $scalar(w, a[r]))
            }
            #[cfg(test)]
            fn scalar(w: &[Self], a: &[$act]) -> f32 {
                $scalar(w, a)
            }
        }
    };
}
kernel!(BlockQ4_0, dot_q4_0);
kernel!(BlockQ4_1, dot_q4_1);
kernel!(BlockQ5_0, dot_q5_0);
kernel!(BlockQ8_0, dot_q8_0);
kernel!(BlockQ4K, dot_q4k, ActK, k, dot_scalar_k);
kernel!(BlockQ6K, dot_q6k, ActK, k, dot_scalar_k);

/// A weight's blocks: copied out of the GGUF tensor, or read in place in a
/// `QTensor` that other kernels also use (candle's tiles for the
/// K-quants' prefill), so the weights are not held twice.
#[derive(Clone)]
enum Store<B> {
    Owned(Vec<B>),
    /// The tensor and where its blocks are: looking them up through
    /// `QTensor::data` for every row cost 3% of decode.
    Shared { _tensor: Arc<QTensor>, blocks: *const B, len: usize },
}

// SAFETY: `Shared` points into the storage of a QTensor it keeps alive,
// which candle never mutates nor moves (its repacked tiles live apart), so
// the blocks are shared immutable data like `Owned`'s.
unsafe impl<B: Send + Sync> Send for Store<B> {}
unsafe impl<B: Send + Sync> Sync for Store<B> {}

impl<B: Block> Store<B> {
    /// The tensor's bytes when they are in memory and aligned for `B`.
    fn shared(t: Arc<QTensor>) -> Option<Store<B>> {
        let Ok(Cow::Borrowed(bytes)) = t.data() else { return None };
        // SAFETY: every `B` is a `repr(C)` struct of integers and halves,
        // for which every bit pattern is valid.
        let (head, blocks, tail) = unsafe { bytes.align_to::<B>() };
        if !head.is_empty() || !tail.is_empty() {
            return None;
        }
        let (blocks, len) = (blocks.as_ptr(), blocks.len());
        Some(Store::Shared { _tensor: t, blocks, len })
    }

    fn get(&self) -> &[B] {
        match self {
            Store::Owned(v) => v,
            // SAFETY: see the Send impl; len blocks were there when shared.
            Store::Shared { blocks, len, .. } => unsafe { std::slice::from_raw_parts(*blocks, *len) },
        }
    }
}

#[derive(Clone)]
enum Blocks {
    Q4_0(Store<BlockQ4_0>),
    Q4_1(Store<BlockQ4_1>),
    Q5_0(Store<BlockQ5_0>),
    Q8_0(Store<BlockQ8_0>),
    Q4K(Store<BlockQ4K>),
    Q6K(Store<BlockQ6K>),
}

/// `$body` with `$b` bound to the block slice of whichever type `$blocks` is.
macro_rules! each {
    ($blocks:expr, $b:ident => $body:expr) => {
        each!(@ $blocks, $b => $body; Q4_0 Q4_1 Q5_0 Q8_0 Q4K Q6K)
    };
    (@ $blocks:expr, $b:ident => $body:expr; $($variant:ident)*) => {
        match $blocks {
            $(Blocks::$variant(s) => {
                let $b = s.get();
                $body
            })*
        }
    };
}

/// A weight matrix (rows × cols) of one of the block types above.
#[derive(Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
}

/// Copies raw GGML bytes into blocks of `B` (the bytes of a QTensor carry
/// no alignment promise, the blocks' halves need 2).
fn blocks_of<B: Block>(bytes: &[u8]) -> Option<Store<B>> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    let n = bytes.len() / size;
    let mut out: Vec<B> = Vec::with_capacity(n);
    // SAFETY: every `B` is a `repr(C)` struct of integers and halves, for
    // which every bit pattern is valid; exactly n * size bytes are written
    // into the reserved capacity before the length is set.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr() as *mut u8, n * size);
        out.set_len(n);
    }
    Some(Store::Owned(out))
}

impl QMatrix {
    /// A matrix from the bytes of a GGML tensor of `dtype`, or None when
    /// these kernels do not run that type or shape.
    pub fn from_ggml(dtype: GgmlDType, bytes: &[u8], rows: usize, cols: usize) -> Option<QMatrix> {
        let blocks = match dtype {
            GgmlDType::Q4_0 => Blocks::Q4_0(blocks_of(bytes)?),
            GgmlDType::Q4_1 => Blocks::Q4_1(blocks_of(bytes)?),
            GgmlDType::Q5_0 => Blocks::Q5_0(blocks_of(bytes)?),
            GgmlDType::Q8_0 => Blocks::Q8_0(blocks_of(bytes)?),
            GgmlDType::Q4K => Blocks::Q4K(blocks_of(bytes)?),
            GgmlDType::Q6K => Blocks::Q6K(blocks_of(bytes)?),
            _ => return None,
        };
        Self::checked(QMatrix { rows, cols, blocks })
    }

    /// A matrix reading a K-quant tensor's blocks where they are, or None
    /// for other types, shapes, or bytes not in memory.
    pub fn shared(t: Arc<QTensor>) -> Option<QMatrix> {
        let (rows, cols) = t.shape().dims2().ok()?;
        let blocks = match t.dtype() {
            GgmlDType::Q4K => Blocks::Q4K(Store::shared(t)?),
            GgmlDType::Q6K => Blocks::Q6K(Store::shared(t)?),
            _ => return None,
        };
        Self::checked(QMatrix { rows, cols, blocks })
    }

    fn checked(m: QMatrix) -> Option<QMatrix> {
        let per_block = QK * m.subs();
        (m.cols.is_multiple_of(per_block) && each!(&m.blocks, b => b.len()) == m.rows * m.cols / per_block).then_some(m)
    }

    /// Runs of QK values per block.
    fn subs(&self) -> usize {
        fn subs<B: Block>(_: &[B]) -> usize {
            B::SUBS
        }
        each!(&self.blocks, b => subs(b))
    }

    /// The rows of `parts` stacked, when they share a block type and a
    /// width (q, k and v; gate and up) and hold their own blocks.
    pub fn stack(parts: &[&QMatrix]) -> Option<QMatrix> {
        fn append<B: Block>(a: &mut Store<B>, b: &Store<B>) -> Option<()> {
            match a {
                Store::Owned(a) => a.extend_from_slice(b.get()),
                Store::Shared { .. } => return None,
            }
            Some(())
        }
        let first = parts.first()?;
        let mut out = (*first).clone();
        for p in &parts[1..] {
            if p.cols != out.cols {
                return None;
            }
            macro_rules! same_type {
                ($($variant:ident)*) => {
                    match (&mut out.blocks, &p.blocks) {
                        $((Blocks::$variant(a), Blocks::$variant(b)) => append(a, b)?,)*
                        _ => return None,
                    }
                };
            }
            same_type!(Q4_0 Q4_1 Q5_0 Q8_0 Q4K Q6K);
            out.rows += p.rows;
        }
        Some(out)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of the blocks.
    pub fn bytes(&self) -> usize {
        fn bytes<B: Block>(b: &[B]) -> usize {
            std::mem::size_of_val(b)
        }
        each!(&self.blocks, b => bytes(b))
    }

    /// Whether an activation row after the first costs little here: the
    /// K-quants' 512-bit kernels, where it costs two instructions per 64
    /// values rather than eight. The 32-value types' 512-bit kernels share
    /// less across rows (each row has its own scales): on SmolLM2 an extra
    /// row cost about half a pass, too much for drafted tokens to pay.
    pub fn wide(&self) -> bool {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
        return matches!(self.blocks, Blocks::Q4K(_) | Blocks::Q6K(_)) && avx512::available();
        #[allow(unreachable_code)]
        false
    }

    /// Row r's dot products with the M rows of `xs`.
    fn dot<const M: usize>(&self, r: usize, xs: &[Acts]) -> [f32; M] {
        fn dot<B: Kernel, const M: usize>(w: &[B], r: usize, xs: &[Acts]) -> [f32; M] {
            let a: [&[B::Act]; M] = std::array::from_fn(|i| B::acts(&xs[i]));
            let n = a[0].len();
            B::dot(&w[r * n..(r + 1) * n], a)
        }
        each!(&self.blocks, b => dot(b, r, xs))
    }

    /// `out[r] = Σ_c W[r, c] · x[c]` with `x` already quantized.
    #[cfg(test)]
    pub fn matvec(&self, x: &Acts, out: &mut [f32]) {
        Self::matvec_parts(&mut [(self, out)], std::slice::from_ref(x))
    }

    /// `x · Wᵀ` for up to [`MAX_ROWS`] quantized rows `xs` and several
    /// matrices of their width at once (q, k and v of different block
    /// types, say), in one parallel region that reads each weight once.
    /// Each part's output is `xs.len()` rows of its own rows, row-major.
    /// A row's results are the same whichever rows come with it.
    pub fn matvec_parts(parts: &mut [(&QMatrix, &mut [f32])], xs: &[Acts]) {
        match xs.len() {
            1 => Self::parts::<1>(parts, xs),
            2 => Self::parts::<2>(parts, xs),
            3 => Self::parts::<3>(parts, xs),
            4 => Self::parts::<4>(parts, xs),
            5 => Self::parts::<5>(parts, xs),
            6 => Self::parts::<6>(parts, xs),
            7 => Self::parts::<7>(parts, xs),
            8 => Self::parts::<8>(parts, xs),
            n => panic!("{n} activation rows at once; at most {MAX_ROWS}"),
        }
    }

    fn parts<const M: usize>(parts: &mut [(&QMatrix, &mut [f32])], xs: &[Acts]) {
        for (m, out) in parts.iter() {
            assert!(xs.iter().all(|x| x.len() == m.cols), "activation length");
            assert_eq!(out.len(), M * m.rows, "output length");
        }
        // Each part's first row in the rows of all.
        let starts: Vec<usize> = parts.iter().scan(0, |n, (m, _)| Some(std::mem::replace(n, *n + m.rows))).collect();
        let total: usize = parts.iter().map(|(m, _)| m.rows).sum();
        let dsts: Vec<(&QMatrix, usize)> = parts.iter_mut().map(|(m, out)| (*m, out.as_mut_ptr() as usize)).collect();
        let row = |g: usize| {
            let p = starts.partition_point(|&s| s <= g) - 1;
            let (m, dst) = dsts[p];
            let r = g - starts[p];
            for (i, v) in m.dot::<M>(r, xs).into_iter().enumerate() {
                // SAFETY: i · rows + r < M · rows, the part's output length
                // (asserted above), and every global row is computed once.
                unsafe { *(dst as *mut f32).add(i * m.rows + r) = v };
            }
        };
        if total <= SERIAL_ROWS {
            (0..total).for_each(row);
            return;
        }
        candle_core::utils::barrier_pool().execute_chunked(total, |range| range.for_each(row));
    }

    /// Rows from `r0` on as floats, as many as fit `out`.
    pub fn rows_f32(&self, r0: usize, out: &mut [f32]) {
        let n = self.cols / (QK * self.subs());
        let r1 = r0 + out.len() / self.cols;
        each!(&self.blocks, b => to_f32(&b[r0 * n..r1 * n], out))
    }
}

/// Rows at or below which one thread does the whole product: waking the
/// pool costs more than it saves.
const SERIAL_ROWS: usize = 64;

/// Most activation rows one [`QMatrix::matvec_parts`] takes.
pub const MAX_ROWS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    fn ramp(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
        (0..rows * cols).map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 25.0).collect()
    }

    /// Every type the kernels run, with a row width it takes (the K-quants
    /// need whole blocks of 256).
    const EVERY_TYPE: [(GgmlDType, usize); 6] = [
        (GgmlDType::Q4_0, 96),
        (GgmlDType::Q4_1, 96),
        (GgmlDType::Q5_0, 96),
        (GgmlDType::Q8_0, 96),
        (GgmlDType::Q4K, 512),
        (GgmlDType::Q6K, 512),
    ];

    /// The kernels against candle's own dequantization of the same bytes:
    /// the weights as candle reads them times the activation blocks as
    /// floats must give the kernels' results up to float rounding, for
    /// every type, through the SIMD, scalar and parallel paths.
    #[test]
    fn kernels_match_dequantized_weights() {
        for (dtype, cols) in EVERY_TYPE {
            let rows = 80;
            let x = ramp(1, cols, 3);
            let mut act = Acts::default();
            act.quantize(&x);
            // The activations as the kernel of the type reads them.
            let act_f32: Vec<f32> = if matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K) {
                act.k.iter().flat_map(|a| a.qs.iter().map(move |&q| q as f32 * a.d)).collect()
            } else {
                act.blocks.iter().flat_map(|a| a.qs.iter().map(move |&q| q as f32 * a.d)).collect()
            };
            let w = Tensor::from_vec(ramp(rows, cols, 1), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let m = QMatrix::from_ggml(dtype, &q.data().unwrap(), rows, cols).unwrap();
            let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let want: Vec<f32> = deq.iter().map(|row| row.iter().zip(&act_f32).map(|(a, b)| a * b).sum()).collect();
            let mut got = vec![0f32; rows];
            m.matvec(&act, &mut got);
            fn scalar<B: Kernel>(w: &[B], r: usize, x: &Acts) -> f32 {
                let a = B::acts(x);
                B::scalar(&w[r * a.len()..(r + 1) * a.len()], a)
            }
            let scalar: Vec<f32> = (0..rows).map(|r| each!(&m.blocks, b => scalar(b, r, &act))).collect();
            let shared = QMatrix::shared(Arc::new(q)).map(|m| {
                let mut y = vec![0f32; rows];
                m.matvec(&act, &mut y);
                y
            });
            assert_eq!(shared.is_some(), matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K), "{dtype:?}");
            let mut ours = vec![0f32; rows * cols];
            m.rows_f32(0, &mut ours);
            for (a, b) in ours.iter().zip(deq.concat()) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{dtype:?}: dequantized {a} vs {b}");
            }
            for r in 0..rows {
                let tol = 1e-4 * want[r].abs().max(1.0);
                assert!((got[r] - want[r]).abs() <= tol, "{dtype:?} row {r}: {} vs {}", got[r], want[r]);
                assert!((scalar[r] - want[r]).abs() <= tol, "{dtype:?} scalar row {r}: {} vs {}", scalar[r], want[r]);
            }
            if let Some(shared) = shared {
                assert_eq!(shared, got, "{dtype:?}: blocks read in place");
            }
        }
    }

    /// Both x86 tiers of every kernel, whichever this CPU would pick,
    /// against the scalar code on the same blocks, one activation row and
    /// three at once; the 32-value types on an odd number of blocks, so
    /// that the 512-bit kernels' pairs end with a block alone.
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    #[test]
    fn avx2_and_avx512_kernels_match_the_scalar_code() {
        fn check<B: Kernel>(
            dtype: GgmlDType,
            tier: &str,
            kernel: impl Fn(&[B], [&[B::Act]; 3]) -> [f32; 3],
            one: impl Fn(&[B], [&[B::Act]; 1]) -> [f32; 1],
        ) {
            let rows = 24;
            let cols = if B::SUBS > 1 { 1536 } else { 47 * QK };
            let w = Tensor::from_vec(ramp(rows, cols, 9), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.data().unwrap();
            // SAFETY: as in Store::shared; the quantized data are whole blocks.
            let (head, blocks, _) = unsafe { bytes.align_to::<B>() };
            assert!(head.is_empty(), "{dtype:?}: blocks aligned");
            let xs: Vec<Acts> = (0..3)
                .map(|seed| {
                    let mut a = Acts::default();
                    a.quantize(&ramp(1, cols, 20 + seed));
                    a
                })
                .collect();
            let n = cols / (QK * B::SUBS);
            for r in 0..rows {
                let w = &blocks[r * n..(r + 1) * n];
                let got = kernel(w, [B::acts(&xs[0]), B::acts(&xs[1]), B::acts(&xs[2])]);
                for (i, x) in xs.iter().enumerate() {
                    let want = B::scalar(w, B::acts(x));
                    let tol = 1e-4 * want.abs().max(1.0);
                    assert!((got[i] - want).abs() <= tol, "{dtype:?} {tier} row {r}.{i}: {} vs {want}", got[i]);
                    assert_eq!(one(w, [B::acts(x)])[0], got[i], "{dtype:?} {tier}: a row alone");
                }
            }
        }
        macro_rules! both_tiers {
            ($($block:ty, $dtype:ident, $name:ident, $avx2:ident;)*) => {$(
                check::<$block>(GgmlDType::$dtype, "avx2", avx2::$avx2, avx2::$avx2);
                if avx512::available() {
                    // SAFETY: available() says the CPU runs them.
                    check::<$block>(GgmlDType::$dtype, "avx512", |w, a| unsafe { avx512::$name(w, a) }, |w, a| unsafe { avx512::$name(w, a) });
                }
            )*};
        }
        both_tiers! {
            BlockQ4_0, Q4_0, dot_q4_0, dot_q4_0_avx2;
            BlockQ4_1, Q4_1, dot_q4_1, dot_q4_1_avx2;
            BlockQ5_0, Q5_0, dot_q5_0, dot_q5_0_avx2;
            BlockQ8_0, Q8_0, dot_q8_0, dot_q8_0_avx2;
            BlockQ4K, Q4K, dot_q4k, dot_q4k_avx2;
            BlockQ6K, Q6K, dot_q6k, dot_q6k_avx2;
        }
        if !avx512::available() {
            eprintln!("no AVX-512 VNNI here: its kernels are not checked");
        }
    }

    #[test]
    fn stacked_matrices_give_the_rows_of_each() {
        let mut act = Acts::default();
        act.quantize(&ramp(1, 64, 2));
        let part = |rows, seed| {
            let w = Tensor::from_vec(ramp(rows, 64, seed), (rows, 64), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
            QMatrix::from_ggml(GgmlDType::Q4_1, &q.data().unwrap(), rows, 64).unwrap()
        };
        let (a, b) = (part(70, 1), part(8, 4));
        let both = QMatrix::stack(&[&a, &b]).unwrap();
        let (mut ya, mut yb, mut y) = (vec![0f32; 70], vec![0f32; 8], vec![0f32; 78]);
        a.matvec(&act, &mut ya);
        b.matvec(&act, &mut yb);
        both.matvec(&act, &mut y);
        assert_eq!(y, [ya, yb].concat());
        let w = Tensor::from_vec(ramp(8, 64, 0), (8, 64), &Device::Cpu).unwrap();
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let c = QMatrix::from_ggml(GgmlDType::Q8_0, &q8.data().unwrap(), 8, 64).unwrap();
        assert!(QMatrix::stack(&[&a, &c]).is_none(), "different block types");
    }

    #[test]
    fn parts_of_different_types_in_one_region() {
        // Enough rows in all (2 × 70 > SERIAL_ROWS) for the parallel path,
        // split where the parts meet.
        let mut act = Acts::default();
        act.quantize(&ramp(1, 256, 2));
        let part = |dtype, rows, seed| {
            let w = Tensor::from_vec(ramp(rows, 256, seed), (rows, 256), &Device::Cpu).unwrap();
            QMatrix::shared(Arc::new(QTensor::quantize(&w, dtype).unwrap())).unwrap()
        };
        let (a, b) = (part(GgmlDType::Q4K, 70, 1), part(GgmlDType::Q6K, 70, 4));
        let (mut ya, mut yb) = (vec![0f32; 70], vec![0f32; 70]);
        a.matvec(&act, &mut ya);
        b.matvec(&act, &mut yb);
        let (mut za, mut zb) = (vec![0f32; 70], vec![0f32; 70]);
        QMatrix::matvec_parts(&mut [(&a, &mut za), (&b, &mut zb)], std::slice::from_ref(&act));
        assert_eq!((za, zb), (ya, yb));
        assert!(QMatrix::stack(&[&a, &a]).is_none(), "blocks read in place are not copied to stack");
    }

    #[test]
    fn several_rows_at_once_give_each_rows_own_result_exactly() {
        // What prompt-lookup decoding relies on: checking drafted tokens
        // in one pass gives the logits one token at a time would.
        for (dtype, cols) in EVERY_TYPE {
            let rows = 70;
            let w = Tensor::from_vec(ramp(rows, cols, 1), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let m = QMatrix::from_ggml(dtype, &q.data().unwrap(), rows, cols).unwrap();
            let xs: Vec<Acts> = (0..MAX_ROWS)
                .map(|seed| {
                    let mut a = Acts::default();
                    a.quantize(&ramp(1, cols, seed + 7));
                    a
                })
                .collect();
            let alone: Vec<Vec<f32>> = xs
                .iter()
                .map(|x| {
                    let mut y = vec![0f32; rows];
                    m.matvec(x, &mut y);
                    y
                })
                .collect();
            for n in [2, 5, MAX_ROWS] {
                let mut y = vec![0f32; n * rows];
                QMatrix::matvec_parts(&mut [(&m, &mut y)], &xs[..n]);
                for (i, want) in alone[..n].iter().enumerate() {
                    assert_eq!(&y[i * rows..(i + 1) * rows], &want[..], "{dtype:?}: row {i} of {n}");
                }
            }
        }
    }

    #[test]
    fn quantized_activations_stay_within_half_a_step() {
        let x = ramp(1, 512, 5);
        let mut act = Acts::default();
        act.quantize(&x);
        for (a, xs) in act.blocks.iter().zip(x.chunks(QK)) {
            for (q, v) in a.qs.iter().zip(xs) {
                assert!((*q as f32 * a.d - v).abs() <= a.d / 2.0 + 1e-6);
            }
            assert_eq!(a.s, a.d * a.qs.iter().map(|&q| q as i32).sum::<i32>() as f32);
        }
        assert_eq!(act.k.len(), 2);
        for (a, xs) in act.k.iter().zip(x.chunks(QK_K)) {
            for (q, v) in a.qs.iter().zip(xs) {
                assert!((*q as f32 * a.d - v).abs() <= a.d / 2.0 + 1e-6);
            }
            for (sum, qs) in a.sums.iter().zip(a.qs.chunks(16)) {
                assert_eq!(*sum as i32, qs.iter().map(|&q| q as i32).sum::<i32>());
            }
        }
        act.quantize(&x[..96]);
        assert!(act.k.is_empty(), "96 values are no whole K-quant block");
    }

    #[test]
    fn rejects_shapes_and_types_it_cannot_run() {
        let w = Tensor::from_vec(ramp(4, 256, 0), (4, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q5K).unwrap();
        assert!(QMatrix::from_ggml(GgmlDType::Q5K, &q.data().unwrap(), 4, 256).is_none());
        let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(QMatrix::from_ggml(GgmlDType::Q4K, &q.data().unwrap(), 8, 128).is_none(), "a row of half a block");
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(QMatrix::from_ggml(GgmlDType::Q8_0, &q.data().unwrap(), 5, 256).is_none(), "wrong row count");
    }
}

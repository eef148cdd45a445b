//! Decode's matrix-vector products, on the weights' own 4-, 5- and 8-bit
//! blocks.
//!
//! Decode multiplies one activation row by every weight of the model for
//! each token, so its speed is the speed of reading the weights. candle 0.11
//! has only scalar code for Q4_1 and Q5_0 (SmolLM2's and Gemma 3's main
//! types), and moving them to Q8_0 reads 1.7x the bytes. These kernels read
//! the blocks as stored, in the way llama.cpp does: the activation row is
//! quantized once to 8-bit blocks of 32 (scale `d` and `s = d·Σq`), every
//! block's integer dot product runs in AVX2 (`maddubs` on unsigned weight
//! nibbles against signed activations), and the block's offset (Q4_0's 8,
//! Q4_1's minimum, Q5_0's 16) is folded in through `s`, once per block.
//! Each block also asks for the bytes 8 KiB ahead of it to be fetched:
//! without that, decode on a 2-core machine read weights at 7.7 GB/s of the
//! 22 GB/s the memory gives; with it, 14.6 GB/s (SmolLM2 tg128 from 69 to
//! 116 tokens/s; 320 bytes ahead gave 80, 2,560 gave 108, 16 KiB 111).
//! The SIMD code is AVX2 (x86-64-v3, ask's build baseline); other targets
//! get a scalar fallback, which `quant::Linear` avoids by keeping candle's
//! NEON kernels there.
//! The rows are shared among candle's spinning thread pool, one parallel
//! region per call; callers fuse the products that share an input (q, k, v;
//! gate, up) into one matrix so a layer needs four regions, not seven.

use candle_core::quantized::GgmlDType;
use half::f16;

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

/// A block type: the integers it stores and the two floats that make them
/// real values, `scale · int + bias`.
trait Block: Copy + Send + Sync + 'static {
    /// The stored integers: unsigned for the 4- and 5-bit types, signed
    /// for Q8_0.
    fn ints(&self) -> [i32; QK];
    fn scale(&self) -> f32;
    /// Added to every value (Q4_0's -8·d, Q4_1's minimum, Q5_0's -16·d).
    /// Against an activation block it adds `bias · Σ d_a·q_a = bias · s`.
    fn bias(&self) -> f32;
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
    fn ints(&self) -> [i32; QK] {
        nibbles(&self.qs)
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn bias(&self) -> f32 {
        -8.0 * self.d.to_f32()
    }
}

impl Block for BlockQ4_1 {
    fn ints(&self) -> [i32; QK] {
        nibbles(&self.qs)
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn bias(&self) -> f32 {
        self.m.to_f32()
    }
}

impl Block for BlockQ5_0 {
    fn ints(&self) -> [i32; QK] {
        let mut q = nibbles(&self.qs);
        let qh = u32::from_le_bytes(self.qh);
        for (j, q) in q.iter_mut().enumerate() {
            *q |= (((qh >> j) & 1) << 4) as i32;
        }
        q
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn bias(&self) -> f32 {
        -16.0 * self.d.to_f32()
    }
}

impl Block for BlockQ8_0 {
    fn ints(&self) -> [i32; QK] {
        self.qs.map(i32::from)
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn bias(&self) -> f32 {
        0.0
    }
}

/// One row's dot product, block by block, without SIMD.
fn dot_scalar<B: Block>(w: &[B], a: &[ActBlock]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let idot: i32 = w.ints().iter().zip(&a.qs).map(|(&q, &a)| q * a as i32).sum();
            w.scale() * a.d * idot as f32 + w.bias() * a.s
        })
        .sum()
}

/// A row of blocks as floats.
fn to_f32<B: Block>(w: &[B], out: &mut [f32]) {
    for (b, out) in w.iter().zip(out.chunks_exact_mut(QK)) {
        let (scale, bias) = (b.scale(), b.bias());
        for (o, q) in out.iter_mut().zip(b.ints()) {
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

    /// Dot product of one row of 4- or 5-bit blocks: `values` unpacks a
    /// block to unsigned bytes; the biases are summed separately.
    #[inline(always)]
    unsafe fn dot_unsigned<B: Block>(w: &[B], a: &[ActBlock], values: impl Fn(&B) -> __m256i) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut offsets = 0f32;
        for (w, a) in w.iter().zip(a) {
            _mm_prefetch::<_MM_HINT_T0>((w as *const B as *const i8).add(PREFETCH));
            let p = dot_u8_i8(values(w), load_act(a));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(w.scale() * a.d), p, acc);
            offsets += w.bias() * a.s;
        }
        hsum(acc) + offsets
    }

    pub(super) fn dot_q4_0(w: &[BlockQ4_0], a: &[ActBlock]) -> f32 {
        // SAFETY: this module is compiled only where AVX2 and FMA are
        // enabled for the whole build.
        unsafe { dot_unsigned(w, a, |b| unpack_nibbles(&b.qs)) }
    }

    pub(super) fn dot_q4_1(w: &[BlockQ4_1], a: &[ActBlock]) -> f32 {
        // SAFETY: as above.
        unsafe { dot_unsigned(w, a, |b| unpack_nibbles(&b.qs)) }
    }

    pub(super) fn dot_q5_0(w: &[BlockQ5_0], a: &[ActBlock]) -> f32 {
        // SAFETY: as above.
        unsafe { dot_unsigned(w, a, |b| _mm256_or_si256(unpack_nibbles(&b.qs), fifth_bits(u32::from_le_bytes(b.qh)))) }
    }

    pub(super) fn dot_q8_0(w: &[BlockQ8_0], a: &[ActBlock]) -> f32 {
        // SAFETY: as above.
        unsafe {
            let mut acc = _mm256_setzero_ps();
            for (w, a) in w.iter().zip(a) {
                _mm_prefetch::<_MM_HINT_T0>((w as *const BlockQ8_0 as *const i8).add(PREFETCH));
                let q = _mm256_loadu_si256(w.qs.as_ptr() as *const __m256i);
                // maddubs wants one unsigned side: |q| against a with q's sign.
                let p = dot_u8_i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(load_act(a), q));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(w.d.to_f32() * a.d), p, acc);
            }
            hsum(acc)
        }
    }
}

trait Kernel: Block {
    fn dot(w: &[Self], a: &[ActBlock]) -> f32;
}

macro_rules! kernel {
    ($block:ty, $simd:ident) => {
        impl Kernel for $block {
            fn dot(w: &[Self], a: &[ActBlock]) -> f32 {
                #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
                return avx2::$simd(w, a);
                #[allow(unreachable_code)]
                dot_scalar(w, a)
            }
        }
    };
}
kernel!(BlockQ4_0, dot_q4_0);
kernel!(BlockQ4_1, dot_q4_1);
kernel!(BlockQ5_0, dot_q5_0);
kernel!(BlockQ8_0, dot_q8_0);

#[derive(Clone)]
enum Blocks {
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q5_0(Vec<BlockQ5_0>),
    Q8_0(Vec<BlockQ8_0>),
}

/// `$body` with `$b` bound to the block vector of whichever type `$blocks` is.
macro_rules! each {
    ($blocks:expr, $b:ident => $body:expr) => {
        match $blocks {
            Blocks::Q4_0($b) => $body,
            Blocks::Q4_1($b) => $body,
            Blocks::Q5_0($b) => $body,
            Blocks::Q8_0($b) => $body,
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
fn blocks_of<B: Block>(bytes: &[u8]) -> Option<Vec<B>> {
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
    Some(out)
}

impl QMatrix {
    /// A matrix from the bytes of a GGML tensor of `dtype`, or None when
    /// these kernels do not run that type or shape.
    pub fn from_ggml(dtype: GgmlDType, bytes: &[u8], rows: usize, cols: usize) -> Option<QMatrix> {
        if !cols.is_multiple_of(QK) {
            return None;
        }
        let blocks = match dtype {
            GgmlDType::Q4_0 => Blocks::Q4_0(blocks_of(bytes)?),
            GgmlDType::Q4_1 => Blocks::Q4_1(blocks_of(bytes)?),
            GgmlDType::Q5_0 => Blocks::Q5_0(blocks_of(bytes)?),
            GgmlDType::Q8_0 => Blocks::Q8_0(blocks_of(bytes)?),
            _ => return None,
        };
        let m = QMatrix { rows, cols, blocks };
        (each!(&m.blocks, b => b.len()) == rows * cols / QK).then_some(m)
    }

    /// The rows of `parts` stacked, when they share a block type and a
    /// width (q, k and v; gate and up).
    pub fn stack(parts: &[&QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        let mut out = (*first).clone();
        for p in &parts[1..] {
            if p.cols != out.cols {
                return None;
            }
            match (&mut out.blocks, &p.blocks) {
                (Blocks::Q4_0(a), Blocks::Q4_0(b)) => a.extend_from_slice(b),
                (Blocks::Q4_1(a), Blocks::Q4_1(b)) => a.extend_from_slice(b),
                (Blocks::Q5_0(a), Blocks::Q5_0(b)) => a.extend_from_slice(b),
                (Blocks::Q8_0(a), Blocks::Q8_0(b)) => a.extend_from_slice(b),
                _ => return None,
            }
            out.rows += p.rows;
        }
        Some(out)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `out[r] = Σ_c W[r, c] · x[c]` with `x` already quantized.
    pub fn matvec(&self, x: &[ActBlock], out: &mut [f32]) {
        assert_eq!(x.len() * QK, self.cols, "activation length");
        assert_eq!(out.len(), self.rows, "output length");
        each!(&self.blocks, b => rows_in_parallel(b, x, out))
    }

    /// Rows from `r0` on as floats, as many as fit `out`.
    pub fn rows_f32(&self, r0: usize, out: &mut [f32]) {
        let n = self.cols / QK;
        let r1 = r0 + out.len() / self.cols;
        each!(&self.blocks, b => to_f32(&b[r0 * n..r1 * n], out))
    }
}

/// Rows at or below which one thread does the whole product: waking the
/// pool costs more than it saves.
const SERIAL_ROWS: usize = 64;

fn rows_in_parallel<B: Kernel>(w: &[B], x: &[ActBlock], out: &mut [f32]) {
    let per_row = x.len();
    if out.len() <= SERIAL_ROWS {
        for (r, o) in out.iter_mut().enumerate() {
            *o = B::dot(&w[r * per_row..(r + 1) * per_row], x);
        }
        return;
    }
    // Each worker writes the rows of the ranges it takes, and the pool
    // hands every range out once; the pointer is passed as an integer
    // because raw pointers are not Sync.
    let dst = out.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(out.len(), |range| {
        for r in range {
            let v = B::dot(&w[r * per_row..(r + 1) * per_row], x);
            // SAFETY: r < out.len() and no other worker is given row r.
            unsafe { *(dst as *mut f32).add(r) = v };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    fn ramp(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
        (0..rows * cols).map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 25.0).collect()
    }

    /// The kernels against candle's own dequantization of the same bytes:
    /// the weights as candle reads them times the activation blocks as
    /// floats must give the kernels' results up to float rounding, for
    /// every type, through the SIMD, scalar and parallel paths.
    #[test]
    fn kernels_match_dequantized_weights() {
        let (rows, cols) = (80, 96);
        let x = ramp(1, cols, 3);
        let mut act = Vec::new();
        quantize_row(&x, &mut act);
        let act_f32: Vec<f32> = act.iter().flat_map(|a| a.qs.iter().map(move |&q| q as f32 * a.d)).collect();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0] {
            let w = Tensor::from_vec(ramp(rows, cols, 1), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let m = QMatrix::from_ggml(dtype, &q.data().unwrap(), rows, cols).unwrap();
            let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let want: Vec<f32> = deq.iter().map(|row| row.iter().zip(&act_f32).map(|(a, b)| a * b).sum()).collect();
            let mut got = vec![0f32; rows];
            m.matvec(&act, &mut got);
            let n = cols / QK;
            let scalar: Vec<f32> = (0..rows).map(|r| each!(&m.blocks, b => dot_scalar(&b[r * n..(r + 1) * n], &act))).collect();
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
        }
    }

    #[test]
    fn stacked_matrices_give_the_rows_of_each() {
        let mut act = Vec::new();
        quantize_row(&ramp(1, 64, 2), &mut act);
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
    fn quantized_activations_stay_within_half_a_step() {
        let x = ramp(1, 64, 5);
        let mut act = Vec::new();
        quantize_row(&x, &mut act);
        for (a, xs) in act.iter().zip(x.chunks(QK)) {
            for (q, v) in a.qs.iter().zip(xs) {
                assert!((*q as f32 * a.d - v).abs() <= a.d / 2.0 + 1e-6);
            }
            assert_eq!(a.s, a.d * a.qs.iter().map(|&q| q as i32).sum::<i32>() as f32);
        }
    }

    #[test]
    fn rejects_shapes_and_types_it_cannot_run() {
        let w = Tensor::from_vec(ramp(4, 256, 0), (4, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(QMatrix::from_ggml(GgmlDType::Q4K, &q.data().unwrap(), 4, 256).is_none());
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(QMatrix::from_ggml(GgmlDType::Q8_0, &q.data().unwrap(), 5, 256).is_none(), "wrong row count");
    }
}

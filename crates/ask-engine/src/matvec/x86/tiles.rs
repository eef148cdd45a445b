//! Prompt products (many activation rows) for Q4_K and Q6_K weights on
//! CPUs with AVX2 but no VNNI, such as Zen 3.
//!
//! There candle's tiles ([`crate::quant`]) stand in for VNNI's `dpbusd`
//! with `maddubs`, `madd` by ones and an add for every 4 values of every
//! row, and turn every run's sum into a float: three operations, two of
//! them multiplies, per 32 products. Here a 6-bit value times a signed
//! byte is at most 8,001 in size, so `maddubs` pairs from a whole run add
//! up in 16 bits first (a Q4_K run: eight `maddubs`, at most 30,480; a
//! Q6_K run of 16: two at a time), one `madd` by the run's integer scale
//! widens them, and a block's runs add up as integers: about 2.1
//! operations per 32 products for Q4_K, 2.5 for Q6_K, and one float
//! multiply per block. The offsets (Q4_K's minimums, Q6_K's 32) go in
//! through the activations' sums per run, by `madd` as well.
//!
//! The weights are repacked once, eight rows to a tile: an AVX2 register
//! holds 4 values of each of 8 rows, against 4 values of one activation
//! row broadcast, so no horizontal sums are needed. Each kernel call
//! takes [`MT`] activation rows, and [`GROUP`] tiles share each pass over
//! them, so that they are read from cache, not memory.

use rayon::prelude::*;

use super::super::{q4k_scale_min, ActK, BlockQ4K, BlockQ6K, Blocks, QMatrix, QK_K};

/// Weight rows per tile.
const ROWS: usize = 8;
/// Activation rows per kernel call.
const MT: usize = 4;
/// Tiles per pass over a set of activation rows.
const GROUP: usize = 4;

/// Eight rows' share of one Q4_K block.
#[repr(C, align(32))]
struct TileQ4K {
    /// `[group of 8 values (32)][row (8)][4 bytes]`: byte j holds value
    /// 8g + j in its low nibble and value 8g + j + 4 in its high one.
    qs: [u8; 32 * ROWS * 4],
    /// `[run (8)][row][2]`: each row's 6-bit scale of the run, twice, the
    /// multipliers of one `madd` lane.
    scales: [i16; 8 * ROWS * 2],
    /// `[pair of runs (4)][row][2]`: minimums of runs 2p and 2p + 1.
    mins: [i16; 4 * ROWS * 2],
    d: [f32; ROWS],
    dmin: [f32; ROWS],
}

/// Eight rows' share of one Q6_K block.
#[repr(C, align(32))]
struct TileQ6K {
    /// `[group of 4 values (64)][row][4 bytes]`: the 6-bit values as
    /// stored, 32 above the real ones.
    qs: [u8; 64 * ROWS * 4],
    /// `[run of 16 (16)][row][2]`: each row's scale of the run, twice.
    scales: [i16; 16 * ROWS * 2],
    /// `[pair of runs (8)][row][2]`: scales of runs 2p and 2p + 1.
    pairs: [i16; 8 * ROWS * 2],
    d: [f32; ROWS],
}

enum Packed {
    Q4K(Vec<TileQ4K>),
    Q6K(Vec<TileQ6K>),
}

/// A Q4_K or Q6_K weight (rows × cols) repacked for prompt products.
pub struct PromptTiles {
    rows: usize,
    cols: usize,
    /// Tiles in `[row tile][block]` order.
    packed: Packed,
}

/// One activation row's block with its sums per run pair, for `madd`.
struct Act {
    k: ActK,
    /// Q4_K: sums of runs 2p and 2p + 1 of 32 values, as two i16 in an
    /// i32 (runs of 16, Q6_K's, are `k.sums` read as i32s).
    pairs32: [i32; 4],
}

impl PromptTiles {
    /// Whether a matrix can have tiles: Q4_K or Q6_K, its rows in eights,
    /// on a build with AVX2.
    pub fn fits(m: &QMatrix) -> bool {
        cfg!(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))
            && matches!(m.blocks, Blocks::Q4K(_) | Blocks::Q6K(_))
            && m.rows.is_multiple_of(ROWS)
            && m.cols.is_multiple_of(QK_K)
    }

    /// The tiles of a matrix that [`fits`](Self::fits), or None.
    pub fn new(m: &QMatrix) -> Option<PromptTiles> {
        if !Self::fits(m) {
            return None;
        }
        let kb = m.cols / QK_K;
        let tiles = m.rows / ROWS;
        let packed = match &m.blocks {
            Blocks::Q4K(s) => {
                let blocks = s.get();
                Packed::Q4K((0..tiles * kb).into_par_iter().map(|i| pack_q4k(blocks, kb, i / kb, i % kb)).collect())
            }
            Blocks::Q6K(s) => {
                let blocks = s.get();
                Packed::Q6K((0..tiles * kb).into_par_iter().map(|i| pack_q6k(blocks, kb, i / kb, i % kb)).collect())
            }
            _ => return None,
        };
        Some(PromptTiles { rows: m.rows, cols: m.cols, packed })
    }

    /// `y = x · Wᵀ` for `x` of `n` rows (row-major, `cols` wide) into `y`
    /// (`n` rows of `rows`). Each activation row is quantized to 8 bits
    /// per 256 values, as for decode.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) {
        assert_eq!(x.len(), n * self.cols, "activation length");
        assert_eq!(y.len(), n * self.rows, "output length");
        let kb = self.cols / QK_K;
        let mut acts: Vec<Act> = Vec::with_capacity(n * kb);
        x.par_chunks_exact(QK_K)
            .map(|xs| {
                let k = ActK::quantize(xs);
                let run = |s: usize| (k.sums[2 * s] as i32 + k.sums[2 * s + 1] as i32) as i16 as u16 as u32;
                let pairs32 = std::array::from_fn(|p| (run(2 * p) | (run(2 * p + 1) << 16)) as i32);
                Act { k, pairs32 }
            })
            .collect_into_vec(&mut acts);
        let tiles = self.rows / ROWS;
        let dst = y.as_mut_ptr() as usize;
        let rows = self.rows;
        (0..tiles.div_ceil(GROUP)).into_par_iter().for_each(|g| {
            for m0 in (0..n).step_by(MT) {
                let mt = MT.min(n - m0);
                for t in g * GROUP..tiles.min((g + 1) * GROUP) {
                    // SAFETY: the kernel writes 8 floats at row m0 + i,
                    // column t·8 of y (n × rows, asserted), which only
                    // this task writes, and reads kb tiles and kb blocks
                    // of each of its activation rows, as sliced.
                    unsafe {
                        match &self.packed {
                            Packed::Q4K(p) => run(&p[t * kb..(t + 1) * kb], &acts[m0 * kb..(m0 + mt) * kb], dst as *mut f32, rows, m0, t),
                            Packed::Q6K(p) => run(&p[t * kb..(t + 1) * kb], &acts[m0 * kb..(m0 + mt) * kb], dst as *mut f32, rows, m0, t),
                        }
                    }
                }
            }
        });
    }
}

/// A tile type's kernel: eight rows' dot products with M activation rows.
trait Tile: Sized {
    /// # Safety
    /// `acts` hold as many blocks as `tiles` holds tiles; AVX2 and FMA.
    unsafe fn kernel<const M: usize>(tiles: &[Self], acts: [&[Act]; M], out: [*mut f32; M]);
}

/// Tile column `t`'s products with the activation rows `acts` (rows
/// m0.. of the input, `tiles.len()` blocks each) into `y` (`rows` wide).
///
/// # Safety
/// `y` holds rows m0 + acts.len() / tiles.len() of `rows` floats, and
/// t·8 + 8 ≤ rows; AVX2 and FMA.
unsafe fn run<T: Tile>(tiles: &[T], acts: &[Act], y: *mut f32, rows: usize, m0: usize, t: usize) {
    let kb = tiles.len();
    let a = |i: usize| &acts[i * kb..(i + 1) * kb];
    let out = |i: usize| y.add((m0 + i) * rows + t * ROWS);
    match acts.len() / kb {
        4 => T::kernel::<4>(tiles, std::array::from_fn(a), std::array::from_fn(out)),
        3 => T::kernel::<3>(tiles, std::array::from_fn(a), std::array::from_fn(out)),
        2 => T::kernel::<2>(tiles, std::array::from_fn(a), std::array::from_fn(out)),
        _ => T::kernel::<1>(tiles, std::array::from_fn(a), std::array::from_fn(out)),
    }
}

fn pack_q4k(blocks: &[BlockQ4K], kb: usize, tile: usize, b: usize) -> TileQ4K {
    let mut t = TileQ4K { qs: [0; 32 * ROWS * 4], scales: [0; 8 * ROWS * 2], mins: [0; 4 * ROWS * 2], d: [0.0; ROWS], dmin: [0.0; ROWS] };
    for r in 0..ROWS {
        let blk = &blocks[(tile * ROWS + r) * kb + b];
        let vals: [u8; QK_K] = std::array::from_fn(|v| blk.value(v));
        t.d[r] = blk.d.to_f32();
        t.dmin[r] = blk.dmin.to_f32();
        for s in 0..8 {
            let (sc, mn) = q4k_scale_min(&blk.scales, s);
            t.scales[(s * ROWS + r) * 2] = sc as i16;
            t.scales[(s * ROWS + r) * 2 + 1] = sc as i16;
            t.mins[((s / 2) * ROWS + r) * 2 + s % 2] = mn as i16;
        }
        for g in 0..32 {
            for j in 0..4 {
                t.qs[(g * ROWS + r) * 4 + j] = vals[8 * g + j] | (vals[8 * g + j + 4] << 4);
            }
        }
    }
    t
}

fn pack_q6k(blocks: &[BlockQ6K], kb: usize, tile: usize, b: usize) -> TileQ6K {
    let mut t = TileQ6K { qs: [0; 64 * ROWS * 4], scales: [0; 16 * ROWS * 2], pairs: [0; 8 * ROWS * 2], d: [0.0; ROWS] };
    for r in 0..ROWS {
        let blk = &blocks[(tile * ROWS + r) * kb + b];
        let vals: [u8; QK_K] = std::array::from_fn(|v| blk.value(v));
        t.d[r] = blk.d.to_f32();
        for s in 0..16 {
            let sc = blk.scales[s] as i16;
            t.scales[(s * ROWS + r) * 2] = sc;
            t.scales[(s * ROWS + r) * 2 + 1] = sc;
            t.pairs[((s / 2) * ROWS + r) * 2 + s % 2] = sc;
        }
        for g in 0..64 {
            for j in 0..4 {
                t.qs[(g * ROWS + r) * 4 + j] = vals[4 * g + j];
            }
        }
    }
    t
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Four signed bytes from `p`, in every 32-bit lane.
    #[inline(always)]
    unsafe fn bcast4(p: *const i8) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
    }

    #[inline(always)]
    unsafe fn load(p: *const i16) -> __m256i {
        _mm256_load_si256(p as *const __m256i)
    }

    impl Tile for TileQ4K {
        #[inline(never)]
        unsafe fn kernel<const M: usize>(tiles: &[Self], acts: [&[Act]; M], out: [*mut f32; M]) {
            let mask = _mm256_set1_epi8(0x0f);
            let mut acc = [_mm256_setzero_ps(); M];
            for (b, t) in tiles.iter().enumerate() {
                let a: [&Act; M] = std::array::from_fn(|m| acts[m].get_unchecked(b));
                let mut isum = [_mm256_setzero_si256(); M];
                for s in 0..8 {
                    // One run: 32 values of 8 rows; the 16-bit sums stay
                    // below 8 · 2 · 15 · 127.
                    let mut s16 = [_mm256_setzero_si256(); M];
                    for g in 4 * s..4 * s + 4 {
                        let w = _mm256_load_si256(t.qs.as_ptr().add(32 * g) as *const __m256i);
                        let lo = _mm256_and_si256(w, mask);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), mask);
                        for m in 0..M {
                            let q = a[m].k.qs.as_ptr().add(8 * g);
                            let p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(q)), _mm256_maddubs_epi16(hi, bcast4(q.add(4))));
                            s16[m] = _mm256_add_epi16(s16[m], p);
                        }
                    }
                    let sc = load(t.scales.as_ptr().add(16 * s));
                    for m in 0..M {
                        isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(s16[m], sc));
                    }
                }
                let d = _mm256_load_ps(t.d.as_ptr());
                let dmin = _mm256_load_ps(t.dmin.as_ptr());
                for m in 0..M {
                    let mut imin = _mm256_setzero_si256();
                    for p in 0..4 {
                        let sums = _mm256_set1_epi32(a[m].pairs32[p]);
                        imin = _mm256_add_epi32(imin, _mm256_madd_epi16(load(t.mins.as_ptr().add(16 * p)), sums));
                    }
                    let da = _mm256_set1_ps(a[m].k.d);
                    acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[m]), _mm256_mul_ps(d, da), acc[m]);
                    acc[m] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(dmin, da), acc[m]);
                }
            }
            for m in 0..M {
                _mm256_storeu_ps(out[m], acc[m]);
            }
        }
    }

    impl Tile for TileQ6K {
        #[inline(never)]
        unsafe fn kernel<const M: usize>(tiles: &[Self], acts: [&[Act]; M], out: [*mut f32; M]) {
            let mut acc = [_mm256_setzero_ps(); M];
            for (b, t) in tiles.iter().enumerate() {
                let a: [&Act; M] = std::array::from_fn(|m| acts[m].get_unchecked(b));
                let mut isum = [_mm256_setzero_si256(); M];
                for s in 0..16 {
                    // One run of 16 values: two `maddubs` at a time stay
                    // below 2 · 2 · 63 · 127 in 16 bits.
                    let sc = load(t.scales.as_ptr().add(16 * s));
                    for h in 0..2 {
                        let g = 4 * s + 2 * h;
                        let w0 = _mm256_load_si256(t.qs.as_ptr().add(32 * g) as *const __m256i);
                        let w1 = _mm256_load_si256(t.qs.as_ptr().add(32 * g + 32) as *const __m256i);
                        for m in 0..M {
                            let q = a[m].k.qs.as_ptr().add(4 * g);
                            let p = _mm256_add_epi16(_mm256_maddubs_epi16(w0, bcast4(q)), _mm256_maddubs_epi16(w1, bcast4(q.add(4))));
                            isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(p, sc));
                        }
                    }
                }
                let d = _mm256_load_ps(t.d.as_ptr());
                for m in 0..M {
                    // Σ scale · 32 · sum over the runs: the stored values' offset.
                    let sums = a[m].k.sums.as_ptr() as *const i32;
                    let mut off = _mm256_setzero_si256();
                    for p in 0..8 {
                        off = _mm256_add_epi32(off, _mm256_madd_epi16(load(t.pairs.as_ptr().add(16 * p)), _mm256_set1_epi32(std::ptr::read_unaligned(sums.add(p)))));
                    }
                    let i = _mm256_sub_epi32(isum[m], _mm256_slli_epi32(off, 5));
                    acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(d, _mm256_set1_ps(a[m].k.d)), acc[m]);
                }
            }
            for m in 0..M {
                _mm256_storeu_ps(out[m], acc[m]);
            }
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
impl<T> Tile for T {
    unsafe fn kernel<const M: usize>(_: &[Self], _: [&[Act]; M], _: [*mut f32; M]) {
        unreachable!("PromptTiles::new returns None without AVX2")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn wave(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 + seed) as f32 * 0.37).sin() * (1.0 + (i % 13) as f32 / 4.0)).collect()
    }

    /// The tiles against candle's dequantization of the same blocks, times
    /// the activations as quantized: equal up to float rounding, for both
    /// types, with a tile group and an activation group left part-full.
    #[test]
    fn tiles_match_dequantized_weights() {
        let (rows, cols, n) = (40, 768, 6);
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
            let w = Tensor::from_vec(wave(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let m = QMatrix::from_ggml(dtype, &q.data().unwrap(), rows, cols).unwrap();
            let tiles = PromptTiles::new(&m).expect("tiles");
            let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let x = wave(n * cols, 5);
            let mut y = vec![0f32; n * rows];
            tiles.matmul(&x, n, &mut y);
            for i in 0..n {
                let a: Vec<f32> = x[i * cols..(i + 1) * cols]
                    .chunks_exact(QK_K)
                    .flat_map(|xs| {
                        let k = ActK::quantize(xs);
                        k.qs.map(|q| q as f32 * k.d)
                    })
                    .collect();
                for (r, row) in deq.iter().enumerate() {
                    let want: f32 = row.iter().zip(&a).map(|(w, a)| w * a).sum();
                    let got = y[i * rows + r];
                    assert!((got - want).abs() <= 1e-3 * (1.0 + want.abs()), "{dtype:?} row {i} col {r}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn other_types_and_shapes_have_no_tiles() {
        let w = Tensor::from_vec(wave(12 * 256, 1), (12, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(PromptTiles::new(&QMatrix::from_ggml(GgmlDType::Q4K, &q.data().unwrap(), 12, 256).unwrap()).is_none());
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(PromptTiles::new(&QMatrix::from_ggml(GgmlDType::Q8_0, &q.data().unwrap(), 12, 256).unwrap()).is_none());
    }
}

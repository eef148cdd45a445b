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
//! The weights are repacked eight rows to a tile: an AVX2 register holds 4
//! values of each of 8 rows, against 4 values of one activation row
//! broadcast, so no horizontal sums are needed. Each kernel call takes
//! [`MT`] activation rows, and [`GROUP`] tile columns share each pass over
//! them, so that they are read from cache, not memory. The tiles are not
//! kept: each task packs its group from the blocks just before it runs it
//! (a pass over the weight per product, where keeping them held the weight
//! twice), so decode and prefill read one copy of the weight.

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

/// One activation row's block with its sums per run pair, for `madd`.
struct Act {
    k: ActK,
    /// Q4_K: sums of runs 2p and 2p + 1 of 32 values, as two i16 in an
    /// i32 (runs of 16, Q6_K's, are `k.sums` read as i32s).
    pairs32: [i32; 4],
}

impl QMatrix {
    /// Whether prompt products can run on tiles ([`tiled_matmul`]):
    /// Q4_K or Q6_K, the rows in eights, on a build with AVX2.
    ///
    /// [`tiled_matmul`]: QMatrix::tiled_matmul
    pub fn tiles_fit(&self) -> bool {
        cfg!(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))
            && matches!(self.blocks, Blocks::Q4K(_) | Blocks::Q6K(_))
            && self.rows.is_multiple_of(ROWS)
            && self.cols.is_multiple_of(QK_K)
    }

    /// `y = x · Wᵀ` for `x` of `n` rows (row-major, `cols` wide) into `y`
    /// (`n` rows of `rows`), for a matrix whose [`tiles_fit`]. Each
    /// activation row is quantized to 8 bits per 256 values, as for decode.
    /// No tiles are kept: each task packs the few it multiplies (a group,
    /// some hundred kilobytes) into a buffer of its thread's, where every
    /// activation row then reads them. So the weight is held once, as its
    /// blocks, for the price of packing it once per product
    /// (docs/benchmarks.md, Memory).
    ///
    /// [`tiles_fit`]: QMatrix::tiles_fit
    pub fn tiled_matmul(&self, x: &[f32], n: usize, y: &mut [f32]) {
        assert!(self.tiles_fit(), "a matrix with tiles");
        let kb = self.cols / QK_K;
        match &self.blocks {
            Blocks::Q4K(s) => {
                let blocks = s.get();
                product(self.rows, self.cols, x, n, y, &SCRATCH_Q4K, |t, b| pack_q4k(blocks, kb, t, b))
            }
            Blocks::Q6K(s) => {
                let blocks = s.get();
                product(self.rows, self.cols, x, n, y, &SCRATCH_Q6K, |t, b| pack_q6k(blocks, kb, t, b))
            }
            _ => unreachable!("tiles_fit() holds only for Q4_K and Q6_K"),
        }
    }
}

thread_local! {
    /// The tiles a task packs for [`QMatrix::tiled_matmul`], kept for
    /// the thread's next task so their memory is not asked for again.
    static SCRATCH_Q4K: std::cell::RefCell<Vec<TileQ4K>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCRATCH_Q6K: std::cell::RefCell<Vec<TileQ6K>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y = x · Wᵀ` for a weight of `rows` × `cols` whose tile of column t,
/// block b, `pack(t, b)` makes: the activations quantized once, then each
/// task packs [`GROUP`] tile columns into its thread's `scratch` and takes
/// them through every activation row.
fn product<T: Tile>(
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    scratch: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    pack: impl Fn(usize, usize) -> T + Sync,
) {
    assert_eq!(x.len(), n * cols, "activation length");
    assert_eq!(y.len(), n * rows, "output length");
    let kb = cols / QK_K;
    let mut acts: Vec<Act> = Vec::with_capacity(n * kb);
    x.par_chunks_exact(QK_K)
        .map(|xs| {
            let k = ActK::quantize(xs);
            let run = |s: usize| (k.sums[2 * s] as i32 + k.sums[2 * s + 1] as i32) as i16 as u16 as u32;
            let pairs32 = std::array::from_fn(|p| (run(2 * p) | (run(2 * p + 1) << 16)) as i32);
            Act { k, pairs32 }
        })
        .collect_into_vec(&mut acts);
    let columns = rows / ROWS;
    let dst = y.as_mut_ptr() as usize;
    (0..columns.div_ceil(GROUP)).into_par_iter().for_each(|g| {
        let (t0, t1) = (g * GROUP, columns.min((g + 1) * GROUP));
        scratch.with(|group| {
            let mut group = group.borrow_mut();
            group.clear();
            group.extend((t0..t1).flat_map(|t| (0..kb).map(move |b| (t, b))).map(|(t, b)| pack(t, b)));
            for m0 in (0..n).step_by(MT) {
                let mt = MT.min(n - m0);
                for t in t0..t1 {
                    let column = &group[(t - t0) * kb..(t - t0 + 1) * kb];
                    // SAFETY: the kernel writes 8 floats at row m0 + i,
                    // column t·8 of y (n × rows, asserted), which only
                    // this task writes, and reads kb tiles and kb blocks
                    // of each of its activation rows, as sliced.
                    unsafe { run(column, &acts[m0 * kb..(m0 + mt) * kb], dst as *mut f32, rows, m0, t) }
                }
            }
        });
    });
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
        t.d[r] = blk.d.to_f32();
        t.dmin[r] = blk.dmin.to_f32();
        for s in 0..8 {
            let (sc, mn) = q4k_scale_min(&blk.scales, s);
            t.scales[(s * ROWS + r) * 2] = sc as i16;
            t.scales[(s * ROWS + r) * 2 + 1] = sc as i16;
            t.mins[((s / 2) * ROWS + r) * 2 + s % 2] = mn as i16;
        }
        // Values 8g..8g + 8 lie in one run of 32 (g / 4), whose nibbles
        // are the low or high halves (run parity) of 32 bytes: four bytes
        // at once, values 8g + j and 8g + j + 4 side by side.
        for g in 0..32 {
            let at = 32 * (g / 8) + 8 * (g % 4);
            let shift = 4 * ((g / 4) % 2);
            let lo = (word(&blk.qs[at..]) >> shift) & 0x0f0f_0f0f;
            let hi = (word(&blk.qs[at + 4..]) >> shift) & 0x0f0f_0f0f;
            t.qs[(g * ROWS + r) * 4..][..4].copy_from_slice(&(lo | (hi << 4)).to_le_bytes());
        }
    }
    t
}

/// The four bytes at the start of `b` as a little-endian word.
fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn pack_q6k(blocks: &[BlockQ6K], kb: usize, tile: usize, b: usize) -> TileQ6K {
    let mut t = TileQ6K { qs: [0; 64 * ROWS * 4], scales: [0; 16 * ROWS * 2], pairs: [0; 8 * ROWS * 2], d: [0.0; ROWS] };
    for r in 0..ROWS {
        let blk = &blocks[(tile * ROWS + r) * kb + b];
        t.d[r] = blk.d.to_f32();
        for s in 0..16 {
            let sc = blk.scales[s] as i16;
            t.scales[(s * ROWS + r) * 2] = sc;
            t.scales[(s * ROWS + r) * 2 + 1] = sc;
            t.pairs[((s / 2) * ROWS + r) * 2 + s % 2] = sc;
        }
        // Values 4g..4g + 4 lie in run k = (g / 8) % 4 of half n = g / 32:
        // low nibbles from bytes 32·(k % 2) of the half's 64 (nibble k / 2),
        // high bit pairs from its 32 qh bytes (pair k); see
        // `BlockQ6K::value`.
        for g in 0..64 {
            let (n, k, i) = (g / 32, (g / 8) % 4, 4 * (g % 8));
            let lo = (word(&blk.ql[64 * n + 32 * (k % 2) + i..]) >> (4 * (k / 2))) & 0x0f0f_0f0f;
            let hi = (word(&blk.qh[32 * n + i..]) >> (2 * k)) & 0x0303_0303;
            t.qs[(g * ROWS + r) * 4..][..4].copy_from_slice(&(lo | (hi << 4)).to_le_bytes());
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
        unreachable!("QMatrix::tiles_fit is false without AVX2")
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
            assert!(m.tiles_fit());
            let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let x = wave(n * cols, 5);
            let mut y = vec![0f32; n * rows];
            m.tiled_matmul(&x, n, &mut y);
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
        assert!(!QMatrix::from_ggml(GgmlDType::Q4K, &q.data().unwrap(), 12, 256).unwrap().tiles_fit());
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(!QMatrix::from_ggml(GgmlDType::Q8_0, &q.data().unwrap(), 12, 256).unwrap().tiles_fit());
    }
}

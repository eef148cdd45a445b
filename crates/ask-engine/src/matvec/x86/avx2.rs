//! The AVX2 kernels (x86-64-v3, ask's build baseline): decode's dot
//! products of each block type. `matvec`'s kernel table picks the 512-bit
//! tier over these where the CPU has it.

use super::super::*;
use std::arch::x86_64::*;

/// How far ahead of the block being read to prefetch (see `matvec`).
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
pub(in crate::matvec) unsafe fn prefetch<B>(w: &B) {
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

pub(in crate::matvec) fn dot_q4_0_avx2<const M: usize>(w: &[BlockQ4_0], a: [&[ActBlock]; M]) -> [f32; M] {
    // SAFETY: this module is compiled only where AVX2 and FMA are
    // enabled for the whole build; indexes are within the lengths
    // asserted.
    unsafe { dot_unsigned(w, a, |b| unpack_nibbles(&b.qs), |b| (b.d.to_f32(), -8.0 * b.d.to_f32())) }
}

pub(in crate::matvec) fn dot_q4_1_avx2<const M: usize>(w: &[BlockQ4_1], a: [&[ActBlock]; M]) -> [f32; M] {
    // SAFETY: as above.
    unsafe { dot_unsigned(w, a, |b| unpack_nibbles(&b.qs), |b| (b.d.to_f32(), b.m.to_f32())) }
}

pub(in crate::matvec) fn dot_q5_0_avx2<const M: usize>(w: &[BlockQ5_0], a: [&[ActBlock]; M]) -> [f32; M] {
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
pub(in crate::matvec) fn q4k_scales_mins(packed: &[u8; 12]) -> [u32; 4] {
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
pub(in crate::matvec) fn dot_q4k_avx2<const M: usize>(w: &[BlockQ4K], a: [&[ActK]; M]) -> [f32; M] {
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
pub(in crate::matvec) fn dot_q6k_avx2<const M: usize>(w: &[BlockQ6K], a: [&[ActK]; M]) -> [f32; M] {
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

pub(in crate::matvec) fn dot_q8_0_avx2<const M: usize>(w: &[BlockQ8_0], a: [&[ActBlock]; M]) -> [f32; M] {
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

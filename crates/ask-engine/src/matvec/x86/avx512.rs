//! The decode kernels in 512-bit registers, for CPUs with AVX-512 (F, BW)
//! and its VNNI extension: Ice Lake and later Xeons, Zen 4 and Zen 5.
//! Chosen at run time ([`available`]); the AVX2 kernels in the parent
//! module stay for every other x86-64 CPU.
//!
//! With the weights in cache the AVX2 Q4_K kernel was bound by
//! instructions, not bytes: per 32 values and activation row it spends a
//! `maddubs`, a `madd` by the run's scale and two adds. Here a register
//! holds two runs, and VNNI's `vpdpwssd` multiplies the `maddubs` pairs by
//! the runs' scales and adds them to the block's sum in one instruction:
//! two instructions per 64 values and row instead of eight. The weights are
//! unpacked once per block for all rows, as in the AVX2 kernels, and each
//! activation row goes through the same operations in the same order
//! whatever the number of rows, so a row's result does not depend on the
//! rows beside it.

use super::super::*;
use std::arch::x86_64::*;

/// Whether this CPU runs these kernels, and candle's switch to hold its
/// quantized kernels to AVX2 (`MISTRALRS_FORCE_AVX2=1`) is not set: that
/// switch stands in for an AVX2-only CPU in benchmarks, so it holds these
/// too.
pub(in crate::matvec) fn available() -> bool {
    static AVAILABLE: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bw") && has!("avx512vnni") && std::env::var("MISTRALRS_FORCE_AVX2").as_deref() != Ok("1")
    });
    *AVAILABLE
}

/// 16-bit lanes 0-15 from `lo`, 16-31 from `hi`, for `vpermw`: which
/// 16-bit lane of the source each lane takes.
const fn halves(lo: i16, hi: i16) -> [i16; 32] {
    let mut idx = [lo; 32];
    let mut i = 16;
    while i < 32 {
        idx[i] = hi;
        i += 1;
    }
    idx
}

/// Lanes 8·k..8·k + 8 from `first + k`, for k in 0..4.
const fn quarters(first: i16) -> [i16; 32] {
    let mut idx = [0; 32];
    let mut i = 0;
    while i < 32 {
        idx[i] = first + (i / 8) as i16;
        i += 1;
    }
    idx
}

#[inline(always)]
unsafe fn lanes(idx: &[i16; 32]) -> __m512i {
    _mm512_loadu_si512(idx.as_ptr() as *const _)
}

/// 16-bit shift counts: `lo` in the low 256 bits, `hi` in the high ones.
#[inline(always)]
unsafe fn shifts(lo: i16, hi: i16) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_set1_epi16(lo), _mm256_set1_epi16(hi))
}

/// The same 32 bytes in both halves.
#[inline(always)]
unsafe fn both_halves(p: *const u8) -> __m512i {
    _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i))
}

#[inline(always)]
unsafe fn load64(p: *const i8) -> __m512i {
    _mm512_loadu_si512(p as *const _)
}

/// Q4_K, as the AVX2 kernel computes it: the 32 bytes of runs 2g and
/// 2g + 1 (low and high nibbles) in one register, low nibbles in its low
/// half, against the 64 activations of those runs; products times each
/// run's scale summed over the block as integers; one FMA by `d · d_a` per
/// block; the minimums against the activations' sums apart.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VNNI ([`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(in crate::matvec) unsafe fn dot_q4k<const M: usize>(w: &[BlockQ4K], a: [&[ActK]; M]) -> [f32; M] {
    assert!(a.iter().all(|a| a.len() == w.len()), "activation length");
    const PICK: [[i16; 32]; 4] = [halves(0, 1), halves(2, 3), halves(4, 5), halves(6, 7)];
    let pick = [lanes(&PICK[0]), lanes(&PICK[1]), lanes(&PICK[2]), lanes(&PICK[3])];
    let nibble = shifts(0, 4);
    let low = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); M];
    let mut acc_m = [_mm_setzero_ps(); M];
    for (i, w) in w.iter().enumerate() {
        super::avx2::prefetch(w);
        let sm = super::avx2::q4k_scales_mins(&w.scales);
        // Scales in 16-bit lanes 0-7, minimums in 8-15.
        let sm = _mm256_cvtepu8_epi16(_mm_set_epi32(sm[3] as i32, sm[2] as i32, sm[1] as i32, sm[0] as i32));
        let (d, dmin) = (w.d.to_f32(), w.dmin.to_f32());
        for r in 0..M {
            let a = a[r].get_unchecked(i);
            let sums = _mm256_loadu_si256(a.sums.as_ptr() as *const __m256i);
            let sums32 = _mm_hadd_epi16(_mm256_castsi256_si128(sums), _mm256_extracti128_si256::<1>(sums));
            let mins = _mm_madd_epi16(_mm256_extracti128_si256::<1>(sm), sums32);
            acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(dmin * a.d), _mm_cvtepi32_ps(mins), acc_m[r]);
        }
        let sm = _mm512_zextsi256_si512(sm);
        let mut sumi = [_mm512_setzero_si512(); M];
        for (g, pick) in pick.iter().enumerate() {
            let q = _mm512_and_si512(_mm512_srlv_epi16(both_halves(w.qs.as_ptr().add(32 * g)), nibble), low);
            let scales = _mm512_permutexvar_epi16(*pick, sm);
            for r in 0..M {
                let x = load64(a[r].get_unchecked(i).qs.as_ptr().add(64 * g));
                sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(q, x), scales);
            }
        }
        for r in 0..M {
            let a = a[r].get_unchecked(i);
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d * a.d), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
        }
    }
    std::array::from_fn(|r| {
        let m = _mm_add_ps(acc_m[r], _mm_movehl_ps(acc_m[r], acc_m[r]));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        _mm512_reduce_add_ps(acc[r]) - _mm_cvtss_f32(m)
    })
}

/// Q6_K: each half block's 64 bytes of low nibbles hold runs 0 and 1 (low
/// nibbles) and 2 and 3 (high ones) of the half, so one register takes two
/// runs of 32 with their high bit pairs from the half's 32 `qh` bytes
/// (shifted by 0 and 2, then 4 and 6); products times each 16 values'
/// scale summed as integers, less 32 times the scales against the
/// activations' sums; one FMA by `d · d_a` per block.
///
/// # Safety
/// As for [`dot_q4k`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(in crate::matvec) unsafe fn dot_q6k<const M: usize>(w: &[BlockQ6K], a: [&[ActK]; M]) -> [f32; M] {
    assert!(a.iter().all(|a| a.len() == w.len()), "activation length");
    const PICK: [[i16; 32]; 4] = [quarters(0), quarters(4), quarters(8), quarters(12)];
    let pick = [lanes(&PICK[0]), lanes(&PICK[1]), lanes(&PICK[2]), lanes(&PICK[3])];
    let pair_shift = shifts(0, 2);
    let (low, pair) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(3));
    let mut acc = [_mm512_setzero_ps(); M];
    for (i, w) in w.iter().enumerate() {
        super::avx2::prefetch(w);
        let d = w.d.to_f32();
        let sc8 = _mm_loadu_si128(w.scales.as_ptr() as *const __m128i);
        let sc16 = _mm256_cvtepi8_epi16(sc8);
        let sc = _mm512_zextsi256_si512(sc16);
        let mut sumi = [_mm512_setzero_si512(); M];
        for n in 0..2 {
            let ql = load64(w.ql.as_ptr().add(64 * n) as *const i8);
            let qh = _mm512_srlv_epi16(both_halves(w.qh.as_ptr().add(32 * n)), pair_shift);
            let runs = [
                _mm512_or_si512(_mm512_and_si512(ql, low), _mm512_slli_epi16::<4>(_mm512_and_si512(qh, pair))),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low),
                    _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srli_epi16::<4>(qh), pair)),
                ),
            ];
            for (k, q) in runs.into_iter().enumerate() {
                // Runs 4n + 2k and 4n + 2k + 1: values 128n + 64k.. of the block.
                let scales = _mm512_permutexvar_epi16(pick[2 * n + k], sc);
                for r in 0..M {
                    let x = load64(a[r].get_unchecked(i).qs.as_ptr().add(128 * n + 64 * k));
                    sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(q, x), scales);
                }
            }
        }
        for r in 0..M {
            let a = a[r].get_unchecked(i);
            let sums = _mm256_loadu_si256(a.sums.as_ptr() as *const __m256i);
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc16, sums));
            let sumi = _mm512_sub_epi32(sumi[r], _mm512_zextsi256_si512(offset));
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d * a.d), _mm512_cvtepi32_ps(sumi), acc[r]);
        }
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
}

/// The 32-value block types (Q4_0, Q4_1, Q5_0, Q8_0), two blocks to a
/// register. The AVX2 kernel spends per block and activation row a
/// `maddubs`, a `madd`, a conversion, an FMA and two scalar products, with
/// every block's float work in a chain of its own; here VNNI's `vpdpbusd`
/// takes the place of `maddubs` and `madd` for two blocks at once, the
/// four halves of the pair's scales and biases are converted in one
/// instruction and multiplied by the activations' `d` and `s` in another,
/// and the biases' products are summed in a vector, not one by one.
/// The weights are unpacked to unsigned bytes once per pair for all rows:
/// `values` unpacks blocks 2k and 2k + 1 (Q8_0's signed values as their
/// magnitudes and a mask of the negative ones, whose activations are
/// negated in their place), `scale_bias` gives
/// `[d, bias, d', bias']` for them (bias as in [`Block::sub`]). A last
/// odd block goes to `tail` (the AVX2 kernel), so that each activation row
/// still goes through the same operations whatever the number of rows.
///
/// # Safety
/// As for [`dot_q4k`].
#[inline(always)]
unsafe fn dot_pairs<B: Block, const M: usize>(
    w: &[B],
    a: [&[ActBlock]; M],
    values: impl Fn(&B, &B) -> (__m512i, __mmask64),
    scale_bias: impl Fn(&B, &B) -> __m128,
    tail: impl Fn(&[B], [&[ActBlock]; M]) -> [f32; M],
) -> [f32; M] {
    assert!(a.iter().all(|a| a.len() == w.len()), "activation length");
    // Lane 0 (block 2k's d·d_a) for the low eight floats, lane 2 (block
    // 2k + 1's) for the high eight.
    let pick = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    let pairs = w.len() / 2;
    let mut acc = [_mm512_setzero_ps(); M];
    let mut acc_b = [_mm_setzero_ps(); M];
    for k in 0..pairs {
        let (w0, w1) = (w.get_unchecked(2 * k), w.get_unchecked(2 * k + 1));
        super::avx2::prefetch(w0);
        super::avx2::prefetch(w1);
        let (q, negative) = values(w0, w1);
        let sb = scale_bias(w0, w1);
        for r in 0..M {
            let (a0, a1) = (a[r].get_unchecked(2 * k), a[r].get_unchecked(2 * k + 1));
            let x = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i)),
                _mm256_loadu_si256(a1.qs.as_ptr() as *const __m256i),
            );
            let x = _mm512_mask_sub_epi8(x, negative, _mm512_setzero_si512(), x);
            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
            // [d·d_a, bias·s, d'·d_a', bias'·s'].
            let ds = _mm_castsi128_ps(_mm_set_epi64x((a1 as *const ActBlock as *const i64).read_unaligned(), (a0 as *const ActBlock as *const i64).read_unaligned()));
            let p = _mm_mul_ps(sb, ds);
            acc_b[r] = _mm_add_ps(acc_b[r], p);
            let scale = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(p));
            acc[r] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(dot), acc[r]);
        }
    }
    let rest = if w.len() % 2 == 1 {
        let last = w.len() - 1;
        tail(&w[last..], std::array::from_fn(|r| &a[r][last..]))
    } else {
        [0.0; M]
    };
    std::array::from_fn(|r| {
        // The biases' products are lanes 1 and 3.
        let b = _mm_add_ss(_mm_shuffle_ps::<1>(acc_b[r], acc_b[r]), _mm_shuffle_ps::<3>(acc_b[r], acc_b[r]));
        _mm512_reduce_add_ps(acc[r]) + _mm_cvtss_f32(b) + rest[r]
    })
}

/// Two blocks' 16 bytes of nibbles as 64 unsigned bytes: block 2k's low
/// nibbles (its values 0-15), its high ones (16-31), then block 2k + 1's.
#[inline(always)]
unsafe fn nibble_pair(qs0: &[u8; QK / 2], qs1: &[u8; QK / 2]) -> __m512i {
    let both = _mm256_inserti128_si256::<1>(
        _mm256_castsi128_si256(_mm_loadu_si128(qs0.as_ptr() as *const __m128i)),
        _mm_loadu_si128(qs1.as_ptr() as *const __m128i),
    );
    // [qs0, qs1, qs0 >> 4, qs1 >> 4] reordered to [qs0, qs0 >> 4, qs1, qs1 >> 4].
    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(both), _mm256_srli_epi16::<4>(both));
    _mm512_and_si512(_mm512_shuffle_i64x2::<0b11_01_10_00>(z, z), _mm512_set1_epi8(0x0f))
}

/// `[d, bias · d, d', bias · d']` from two blocks' scales.
#[inline(always)]
unsafe fn scaled(d0: f16, d1: f16, bias: f32) -> __m128 {
    let (d0, d1) = (d0.to_bits() as i16, d1.to_bits() as i16);
    let d = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, d1, d1, d0, d0));
    _mm_mul_ps(d, _mm_set_ps(bias, 1.0, bias, 1.0))
}

/// # Safety
/// As for [`dot_q4k`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(in crate::matvec) unsafe fn dot_q4_0<const M: usize>(w: &[BlockQ4_0], a: [&[ActBlock]; M]) -> [f32; M] {
    dot_pairs(w, a, |w0, w1| (nibble_pair(&w0.qs, &w1.qs), 0), |w0, w1| scaled(w0.d, w1.d, -8.0), super::avx2::dot_q4_0_avx2)
}

/// # Safety
/// As for [`dot_q4k`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(in crate::matvec) unsafe fn dot_q4_1<const M: usize>(w: &[BlockQ4_1], a: [&[ActBlock]; M]) -> [f32; M] {
    dot_pairs(
        w,
        a,
        |w0, w1| (nibble_pair(&w0.qs, &w1.qs), 0),
        // d and m side by side in each block: four halves in two loads.
        |w0, w1| {
            let dm = |w: &BlockQ4_1| (w as *const BlockQ4_1 as *const i32).read_unaligned();
            _mm_cvtph_ps(_mm_set_epi32(0, 0, dm(w1), dm(w0)))
        },
        super::avx2::dot_q4_1_avx2,
    )
}

/// # Safety
/// As for [`dot_q4k`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(in crate::matvec) unsafe fn dot_q5_0<const M: usize>(w: &[BlockQ5_0], a: [&[ActBlock]; M]) -> [f32; M] {
    dot_pairs(
        w,
        a,
        |w0, w1| {
            // Bit j of the 64 fifth bits is value j of the pair, as laid out.
            let bits = u32::from_le_bytes(w0.qh) as u64 | (u32::from_le_bytes(w1.qh) as u64) << 32;
            (_mm512_or_si512(nibble_pair(&w0.qs, &w1.qs), _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10))), 0)
        },
        |w0, w1| scaled(w0.d, w1.d, -16.0),
        super::avx2::dot_q5_0_avx2,
    )
}

/// Q8_0: |q| against the activations negated where q < 0, as the AVX2
/// kernel's `sign` does, so the integer products are exact.
///
/// # Safety
/// As for [`dot_q4k`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(in crate::matvec) unsafe fn dot_q8_0<const M: usize>(w: &[BlockQ8_0], a: [&[ActBlock]; M]) -> [f32; M] {
    dot_pairs(
        w,
        a,
        |w0, w1| {
            let q = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(w0.qs.as_ptr() as *const __m256i)),
                _mm256_loadu_si256(w1.qs.as_ptr() as *const __m256i),
            );
            (_mm512_abs_epi8(q), _mm512_movepi8_mask(q))
        },
        |w0, w1| scaled(w0.d, w1.d, 0.0),
        super::avx2::dot_q8_0_avx2,
    )
}

//! The K-quant decode kernels in 512-bit registers, for CPUs with AVX-512
//! (F, BW) and its VNNI extension: Ice Lake and later Xeons, Zen 4 and
//! Zen 5. Chosen at run time ([`available`]); the AVX2 kernels in the
//! parent module stay for every other x86-64 CPU.
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

use super::*;
use std::arch::x86_64::*;

/// Whether this CPU runs these kernels, and candle's switch to hold its
/// quantized kernels to AVX2 (`MISTRALRS_FORCE_AVX2=1`) is not set: that
/// switch stands in for an AVX2-only CPU in benchmarks, so it holds these
/// too.
pub(super) fn available() -> bool {
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
pub(super) unsafe fn dot_q4k<const M: usize>(w: &[BlockQ4K], a: [&[ActK]; M]) -> [f32; M] {
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
pub(super) unsafe fn dot_q6k<const M: usize>(w: &[BlockQ6K], a: [&[ActK]; M]) -> [f32; M] {
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

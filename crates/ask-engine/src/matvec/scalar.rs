//! The scalar reference: every SIMD kernel gives what these give (to float
//! rounding), and targets without AVX2 run them.

use super::blocks::*;

/// One row's dot product, run by run, without SIMD.
pub(super) fn dot_scalar<B: Block>(w: &[B], a: &[ActBlock]) -> f32 {
    let runs = w.iter().flat_map(|w| (0..B::SUBS).map(|j| w.sub(j)));
    runs.zip(a)
        .map(|((ints, scale, bias), a)| {
            let idot: i32 = ints.iter().zip(&a.qs).map(|(&q, &a)| q * a as i32).sum();
            scale * a.d * idot as f32 + bias * a.s
        })
        .sum()
}

/// [`dot_scalar`] against 256-value activation blocks.
pub(super) fn dot_scalar_k<B: Block>(w: &[B], a: &[ActK]) -> f32 {
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
pub(super) fn to_f32<B: Block>(w: &[B], out: &mut [f32]) {
    let runs = w.iter().flat_map(|w| (0..B::SUBS).map(|j| w.sub(j)));
    for ((ints, scale, bias), out) in runs.zip(out.chunks_exact_mut(QK)) {
        for (o, q) in out.iter_mut().zip(ints) {
            *o = scale * q as f32 + bias;
        }
    }
}

//! The x86-64 kernels, chosen at run time: AVX2 (the build's baseline), the
//! 512-bit VNNI tier, and the prompt tiles for CPUs without VNNI (which
//! other targets build as a scalar fallback).

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
pub(super) mod avx2;
#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
pub(super) mod avx512;
pub(super) mod tiles;

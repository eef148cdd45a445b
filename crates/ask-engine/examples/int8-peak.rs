//! The machine's ceiling for the integer dot products prompt tiles are
//! made of, and how close a prefill rate comes to it.
//!
//!     int8-peak [MODEL.gguf [PREFILL_TOKENS_PER_S ...]]
//!
//! Each instruction mix runs on every core at once, in a loop of
//! independent accumulators that no data dependency slows down: the rate
//! the cores' vector units can issue it, which no kernel beats. The mixes:
//! - `avx2 int8`: `vpmaddubsw` (32 u8 × i8 products summed in pairs),
//!   `vpmaddwd` by the block scales (to 32 bits), `vpaddd`: what
//!   llama.cpp's and candle's AVX2 K-quant kernels do per 32 weights;
//! - `avx2 int8 tiles`: `vpmaddubsw` and a 16-bit `vpaddw`, the inner loop
//!   of ask's own AVX2 prompt tiles (`matvec::tiles`), which widen a run's
//!   sum once: the ceiling of the prompt path of AVX2-only CPUs;
//! - `avx-vnni` / `avx512 vnni`: one `vpdpbusd` per 32 / 64 weights;
//! - `avx2 f32 fma`: `vfmadd231ps`, for the float path's ceiling.
//!
//! With a model, the multiply-adds per token of its weight matrices (every
//! 2-D tensor; the token embedding counts only as the output layer it is
//! when tied) turn tokens/s into a share of each peak. Attention's own
//! products, which grow with the prompt, are left out: the share is of the
//! weights' work.

use std::time::Instant;

const UNITS: u64 = 8;

/// Runs `f(iterations)` on `threads` threads at once, five times;
/// multiply-adds per second of the fastest (a ceiling: the first runs
/// meet cold clocks).
fn rate(threads: usize, macs_per_iteration: u64, f: fn(u64)) -> f64 {
    let n: u64 = 20_000_000;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(move || f(n));
                }
            });
            (n * macs_per_iteration * threads as u64) as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
mod mixes {
    use std::arch::asm;

    /// A function running `$setup` once and `$body` `n` times.
    macro_rules! looped {
        ($(#[$doc:meta])* $name:ident, [$($setup:expr),* $(,)?], [$($body:expr),* $(,)?]) => {
            $(#[$doc])*
            pub fn $name(n: u64) {
                unsafe {
                    asm!(
                        $($setup,)*
                        "2:",
                        $($body,)*
                        "dec rcx",
                        "jnz 2b",
                        "vzeroupper",
                        inout("rcx") n => _,
                        clobber_abi("C"),
                        options(nostack),
                    );
                }
            }
        };
    }

    /// `$op` into 8 independent accumulators of register kind `$r` (ymm,
    /// zmm), both sources zeroed by `$zero` first.
    macro_rules! eight {
        ($(#[$doc:meta])* $name:ident, $zero:literal, $op:literal, $r:literal) => {
            looped!(
                $(#[$doc])* $name,
                [concat!($zero, " ", $r, "12, ", $r, "12, ", $r, "12"), concat!($zero, " ", $r, "13, ", $r, "13, ", $r, "13")],
                [
                    concat!($op, " ", $r, "0, ", $r, "12, ", $r, "13"), concat!($op, " ", $r, "1, ", $r, "12, ", $r, "13"),
                    concat!($op, " ", $r, "2, ", $r, "12, ", $r, "13"), concat!($op, " ", $r, "3, ", $r, "12, ", $r, "13"),
                    concat!($op, " ", $r, "4, ", $r, "12, ", $r, "13"), concat!($op, " ", $r, "5, ", $r, "12, ", $r, "13"),
                    concat!($op, " ", $r, "6, ", $r, "12, ", $r, "13"), concat!($op, " ", $r, "7, ", $r, "12, ", $r, "13"),
                ]
            );
        };
    }

    looped!(
        /// 8 × (vpmaddubsw, vpmaddwd, vpaddd): 8 × 32 multiply-adds.
        avx2_int8,
        ["vpcmpeqw ymm15, ymm15, ymm15", "vpsrlw ymm15, ymm15, 15", "vpxor ymm12, ymm12, ymm12", "vpxor ymm13, ymm13, ymm13"],
        [
            "vpmaddubsw ymm8, ymm12, ymm13", "vpmaddwd ymm8, ymm8, ymm15", "vpaddd ymm0, ymm0, ymm8",
            "vpmaddubsw ymm9, ymm12, ymm13", "vpmaddwd ymm9, ymm9, ymm15", "vpaddd ymm1, ymm1, ymm9",
            "vpmaddubsw ymm10, ymm12, ymm13", "vpmaddwd ymm10, ymm10, ymm15", "vpaddd ymm2, ymm2, ymm10",
            "vpmaddubsw ymm11, ymm12, ymm13", "vpmaddwd ymm11, ymm11, ymm15", "vpaddd ymm3, ymm3, ymm11",
            "vpmaddubsw ymm8, ymm12, ymm13", "vpmaddwd ymm8, ymm8, ymm15", "vpaddd ymm4, ymm4, ymm8",
            "vpmaddubsw ymm9, ymm12, ymm13", "vpmaddwd ymm9, ymm9, ymm15", "vpaddd ymm5, ymm5, ymm9",
            "vpmaddubsw ymm10, ymm12, ymm13", "vpmaddwd ymm10, ymm10, ymm15", "vpaddd ymm6, ymm6, ymm10",
            "vpmaddubsw ymm11, ymm12, ymm13", "vpmaddwd ymm11, ymm11, ymm15", "vpaddd ymm7, ymm7, ymm11",
        ]
    );
    looped!(
        /// 8 × (vpmaddubsw, vpaddw): 8 × 32 multiply-adds summed in 16 bits,
        /// the inner loop of ask's own AVX2 tiles (`matvec::tiles`), whose
        /// `madd` widens a whole run's sum once.
        avx2_int8_tiles,
        ["vpxor ymm12, ymm12, ymm12", "vpxor ymm13, ymm13, ymm13"],
        [
            "vpmaddubsw ymm8, ymm12, ymm13", "vpaddw ymm0, ymm0, ymm8",
            "vpmaddubsw ymm9, ymm12, ymm13", "vpaddw ymm1, ymm1, ymm9",
            "vpmaddubsw ymm10, ymm12, ymm13", "vpaddw ymm2, ymm2, ymm10",
            "vpmaddubsw ymm11, ymm12, ymm13", "vpaddw ymm3, ymm3, ymm11",
            "vpmaddubsw ymm8, ymm12, ymm13", "vpaddw ymm4, ymm4, ymm8",
            "vpmaddubsw ymm9, ymm12, ymm13", "vpaddw ymm5, ymm5, ymm9",
            "vpmaddubsw ymm10, ymm12, ymm13", "vpaddw ymm6, ymm6, ymm10",
            "vpmaddubsw ymm11, ymm12, ymm13", "vpaddw ymm7, ymm7, ymm11",
        ]
    );
    eight!(
        /// 8 × vpdpbusd on ymm: 8 × 32 multiply-adds.
        avx_vnni, "vpxor", "{{vex}} vpdpbusd", "ymm"
    );
    eight!(
        /// 8 × vpdpbusd on zmm: 8 × 64 multiply-adds.
        avx512_vnni, "vpxord", "vpdpbusd", "zmm"
    );
    eight!(
        /// 8 × vfmadd231ps on ymm: 8 × 8 multiply-adds.
        avx2_fma, "vxorps", "vfmadd231ps", "ymm"
    );
}

/// Multiply-adds per token of the weight matrices of a GGUF model.
fn macs_per_token(path: &str) -> (u64, String) {
    use candle_core::quantized::gguf_file;
    let mut f = std::fs::File::open(path).expect("model");
    let ct = gguf_file::Content::read(&mut f).expect("GGUF");
    let tied = !ct.tensor_infos.contains_key("output.weight");
    let macs = ct
        .tensor_infos
        .iter()
        .filter(|(name, info)| info.shape.dims().len() == 2 && (tied || name.as_str() != "token_embd.weight"))
        .map(|(_, info)| info.shape.elem_count() as u64)
        .sum();
    let arch = ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    (macs, arch)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut peaks: Vec<(&str, f64)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            peaks.push(("avx2 f32 fma", rate(threads, UNITS * 8, mixes::avx2_fma)));
            peaks.push(("avx2 int8", rate(threads, UNITS * 32, mixes::avx2_int8)));
            peaks.push(("avx2 int8 tiles", rate(threads, UNITS * 32, mixes::avx2_int8_tiles)));
        }
        if has!("avxvnni") {
            peaks.push(("avx-vnni int8", rate(threads, UNITS * 32, mixes::avx_vnni)));
        }
        if has!("avx512vnni") {
            peaks.push(("avx512 vnni int8", rate(threads, UNITS * 64, mixes::avx512_vnni)));
        }
    }
    println!("{threads} threads");
    for (name, r) in &peaks {
        println!("{name:18} {:8.1} G multiply-adds/s ({:.1} per core)", r / 1e9, r / 1e9 / threads as f64);
    }
    let Some(model) = args.get(1) else { return };
    let (macs, arch) = macs_per_token(model);
    println!("{model} ({arch}): {:.3} G multiply-adds per token in its weight matrices", macs as f64 / 1e9);
    for tps in &args[2..] {
        let tps: f64 = tps.parse().expect("PREFILL_TOKENS_PER_S");
        let need = tps * macs as f64;
        let shares: Vec<String> = peaks.iter().map(|(name, r)| format!("{:.0}% of {name}", 100.0 * need / r)).collect();
        println!("{tps} tokens/s = {:.1} G multiply-adds/s: {}", need / 1e9, shares.join(", "));
    }
    println!("ceilings in tokens/s: {}", peaks.iter().map(|(n, r)| format!("{n} {:.0}", r / macs as f64)).collect::<Vec<_>>().join(", "));
}

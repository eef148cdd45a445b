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
//! without that, decode reads the weights at about a third of the memory's
//! bandwidth (the distance was chosen by measuring; see docs/design.md,
//! Generation).
//! The layout follows ggml-cpu's: the block layouts and the activations
//! ([`blocks`]), the scalar reference every kernel is checked against
//! ([`scalar`]), and each architecture's kernels apart (`x86`: AVX2, the
//! x86-64-v3 build baseline; the 512-bit VNNI tier chosen at run time where
//! the CPU has it; the prompt tiles). Other targets get the scalar code,
//! which `quant::Linear` avoids by keeping candle's NEON kernels there.
//! The rows are shared among candle's spinning thread pool, one parallel
//! region per call; callers fuse the products that share an input (q, k, v;
//! gate, up) into one matrix, or one call ([`QMatrix::matvec_parts`]), so a
//! layer needs four regions, not seven.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

mod blocks;
mod scalar;
mod x86;

pub use blocks::{ActBlock, ActK, Acts, QK, QK_K};
use blocks::*;
use scalar::*;
#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
use x86::{avx2, avx512};

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

/// Every block type's kernel in one table: the activations it reads, its
/// scalar reference, and its SIMD tiers, fastest first: the 512-bit VNNI
/// one where the CPU has it (checked once), else AVX2; the scalar code on
/// other targets.
macro_rules! kernels {
    ($($block:ty: $act:ty, $field:ident, $scalar:ident, $avx512:ident, $avx2:ident;)*) => {$(
        impl Kernel for $block {
            type Act = $act;
            fn acts(x: &Acts) -> &[$act] {
                &x.$field
            }
            fn dot<const M: usize>(w: &[Self], a: [&[$act]; M]) -> [f32; M] {
                #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
                {
                    if avx512::available() {
                        // SAFETY: the CPU has what it needs.
                        return unsafe { avx512::$avx512(w, a) };
                    }
                    return avx2::$avx2(w, a);
                }
                #[allow(unreachable_code)]
                std::array::from_fn(|r| $scalar(w, a[r]))
            }
            #[cfg(test)]
            fn scalar(w: &[Self], a: &[$act]) -> f32 {
                $scalar(w, a)
            }
        }
    )*};
}
kernels! {
    BlockQ4_0: ActBlock, blocks, dot_scalar, dot_q4_0, dot_q4_0_avx2;
    BlockQ4_1: ActBlock, blocks, dot_scalar, dot_q4_1, dot_q4_1_avx2;
    BlockQ5_0: ActBlock, blocks, dot_scalar, dot_q5_0, dot_q5_0_avx2;
    BlockQ8_0: ActBlock, blocks, dot_scalar, dot_q8_0, dot_q8_0_avx2;
    BlockQ4K: ActK, k, dot_scalar_k, dot_q4k, dot_q4k_avx2;
    BlockQ6K: ActK, k, dot_scalar_k, dot_q6k, dot_q6k_avx2;
}

/// A weight's blocks: copied out of the GGUF tensor, or read in place in a
/// `QTensor` that other kernels also use (candle's tiles for the
/// K-quants' prefill), so the weights are not held twice.
#[derive(Clone)]
enum BlockBuf<B> {
    Owned(Vec<B>),
    /// The tensor and where its blocks are: looking them up through
    /// `QTensor::data` for every row cost 3% of decode.
    Shared { _tensor: Arc<QTensor>, blocks: *const B, len: usize },
}

// SAFETY: `Shared` points into the storage of a QTensor it keeps alive,
// which candle never mutates nor moves (its repacked tiles live apart), so
// the blocks are shared immutable data like `Owned`'s.
unsafe impl<B: Send + Sync> Send for BlockBuf<B> {}
unsafe impl<B: Send + Sync> Sync for BlockBuf<B> {}

impl<B: Block> BlockBuf<B> {
    /// The tensor's bytes when they are in memory and aligned for `B`.
    fn shared(t: Arc<QTensor>) -> Option<BlockBuf<B>> {
        let Ok(Cow::Borrowed(bytes)) = t.data() else { return None };
        // SAFETY: every `B` is a `repr(C)` struct of integers and halves,
        // for which every bit pattern is valid.
        let (head, blocks, tail) = unsafe { bytes.align_to::<B>() };
        if !head.is_empty() || !tail.is_empty() {
            return None;
        }
        let (blocks, len) = (blocks.as_ptr(), blocks.len());
        Some(BlockBuf::Shared { _tensor: t, blocks, len })
    }

    fn get(&self) -> &[B] {
        match self {
            BlockBuf::Owned(v) => v,
            // SAFETY: see the Send impl; len blocks were there when shared.
            BlockBuf::Shared { blocks, len, .. } => unsafe { std::slice::from_raw_parts(*blocks, *len) },
        }
    }
}

#[derive(Clone)]
enum Blocks {
    Q4_0(BlockBuf<BlockQ4_0>),
    Q4_1(BlockBuf<BlockQ4_1>),
    Q5_0(BlockBuf<BlockQ5_0>),
    Q8_0(BlockBuf<BlockQ8_0>),
    Q4K(BlockBuf<BlockQ4K>),
    Q6K(BlockBuf<BlockQ6K>),
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
fn blocks_of<B: Block>(bytes: &[u8]) -> Option<BlockBuf<B>> {
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
    Some(BlockBuf::Owned(out))
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
            GgmlDType::Q4K => Blocks::Q4K(BlockBuf::shared(t)?),
            GgmlDType::Q6K => Blocks::Q6K(BlockBuf::shared(t)?),
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
        fn append<B: Block>(a: &mut BlockBuf<B>, b: &BlockBuf<B>) -> Option<()> {
            match a {
                BlockBuf::Owned(a) => a.extend_from_slice(b.get()),
                BlockBuf::Shared { .. } => return None,
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
            // SAFETY: as in BlockBuf::shared; the quantized data are whole blocks.
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

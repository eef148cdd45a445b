//! Quantized linear layers that are fast on both sides of generation.
//!
//! Prefill multiplies many rows by each weight, so it is compute-bound:
//! there the weight is dequantized to f32 on the fly (in parallel, one
//! layer at a time) and multiplied by gemm's AVX2/AVX-512 sgemm, which is
//! several times faster than quantized dot products on ask's blocks. The
//! K-quants on x86 are the exception: candle repacks them into tiles whose
//! integer dot products (VNNI, or AVX2 `maddubs`) beat sgemm
//! ([`candle_tiles`]), and on CPUs without VNNI ask's own tiles
//! ([`QMatrix::tiled_matmul`], packed from the blocks as each product
//! runs) beat candle's AVX2 tier. Decode
//! multiplies one row, so it is memory-bound: there the weight stays in
//! its blocks and ask's own kernels
//! ([`crate::matvec`]) read them as stored, for Q4_0, Q4_1, Q5_0, Q8_0,
//! Q4_K and Q6_K (Q5_1, rare, is moved to Q8_0 at load). A K-quant weight
//! keeps one copy of its blocks: on CPUs without VNNI, ask's decode
//! kernels read them and its prompt tiles are packed from them as each
//! product runs; with VNNI, candle's tiles for prefill are made from them
//! and held beside them. Other types (Q2_K, Q3_K, Q5_K, floats) go through
//! candle's `QMatMul`, which has SIMD kernels for them.

use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use rayon::prelude::*;

use crate::matvec::{Acts, QMatrix};

/// Rows at or above which a matmul goes through f32 sgemm.
pub const SGEMM_MIN_ROWS: usize = 16;

#[derive(Clone)]
enum Weight {
    /// Blocks that [`crate::matvec`] runs.
    Blocks(Arc<QMatrix>),
    /// A K-quant weight: candle's tiles ([`candle_tiles`]) for many rows,
    /// ask's kernels on the same bytes for one.
    Tiled { tiles: QMatMul, blocks: Arc<QMatrix> },
    /// A K-quant weight on a CPU without VNNI: ask's prompt tiles
    /// ([`QMatrix::tiled_matmul`]) for many rows, ask's kernels on the
    /// same blocks for one.
    Own { blocks: Arc<QMatrix> },
    /// `QMatMul::QTensor` for other quantized types, `Tensor` for floats.
    Candle(QMatMul),
}

/// A weight matrix (out × in) and an optional bias.
#[derive(Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out_features: usize,
    in_features: usize,
    /// candle multiplies many rows by this weight on its repacked tiles
    /// ([`candle_tiles`]), not ask's dequantize-and-sgemm.
    tiled: bool,
}

/// Whether candle runs `x · Wᵀ` for a K-quant weight with integer dot
/// products on tiles it repacks once (VNNI, or AVX2 `maddubs`), for every
/// number of rows. Integer products on the tiles prefill faster than
/// dequantizing them into sgemm on both tiers (`generate-bench … pp512`),
/// so those weights take candle's path; the conditions are candle's own
/// (`repack_x86::select`).
fn candle_tiles(dtype: GgmlDType, out_features: usize, in_features: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    let simd = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    simd && matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K) && out_features % 16 == 0 && in_features % k_quants::QK_K == 0
}

/// Whether candle's tiles would run on their AVX2 tier (no AVX-512 VNNI,
/// no AVX-VNNI, or candle's `MISTRALRS_FORCE_AVX2=1`), where ask's own
/// prompt tiles ([`QMatrix::tiled_matmul`]) are faster: they add `maddubs` pairs in
/// 16 bits and widen once per run, where candle's tier spends a `madd` and
/// an add on every 4 values (figures in docs/design.md, Generation).
fn own_tiles() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let forced = |v: &str| std::env::var(v).as_deref() == Ok("1");
        let vnni = (has!("avx512f") && has!("avx512vnni")) || has!("avxvnni") || forced("MISTRALRS_FORCE_AVXVNNI");
        OWN_KERNELS && (forced("MISTRALRS_FORCE_AVX2") || !vnni)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// What decides which kernels run here: the x86 features the dispatchers
/// ask for, and candle's switches that hold them to a lower tier
/// (`MISTRALRS_FORCE_AVX2`, `MISTRALRS_FORCE_AVXVNNI`). Two processes with
/// the same description run the same kernels, so a cache of their sums
/// (`Generator::keep_opening`) may be shared between them.
pub(crate) fn kernel_path() -> String {
    let forced = ["MISTRALRS_FORCE_AVX2", "MISTRALRS_FORCE_AVXVNNI"].into_iter().filter(|v| std::env::var(v).as_deref() == Ok("1"));
    #[cfg(target_arch = "x86_64")]
    let features = {
        use std::arch::is_x86_feature_detected as has;
        [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vnni", has!("avx512vnni")),
            ("avxvnni", has!("avxvnni")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let features = std::iter::once(std::env::consts::ARCH);
    features.chain(forced).collect::<Vec<_>>().join(",")
}

/// Which kernels a layer's decode runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernels {
    /// ask's block kernels ([`crate::matvec`]) where the type has one.
    Blocks,
    /// candle's, with the types it has only scalar code for (Q4_1, Q5_0,
    /// Q5_1) moved to Q8_0, for which it has NEON and AVX kernels.
    Candle,
    /// candle's on the weights as stored (tests that compare every matmul
    /// in f32 against another implementation).
    Exact,
}

/// ask's block kernels are SIMD on x86-64 with AVX2 only; elsewhere (arm64
/// laptops) their scalar fallback would be slower than candle's NEON
/// kernels for Q8_0.
const OWN_KERNELS: bool = cfg!(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"));

impl Linear {
    /// `fast`: decode through the fastest kernels this CPU has (always,
    /// but in tests that compare every matmul in f32 against another
    /// implementation).
    pub fn new(weight: Arc<QTensor>, bias: Option<Tensor>, fast: bool) -> Result<Linear> {
        let kernels = match (fast, OWN_KERNELS) {
            (false, _) => Kernels::Exact,
            (true, true) => Kernels::Blocks,
            (true, false) => Kernels::Candle,
        };
        Self::with_kernels(weight, bias, kernels)
    }

    fn with_kernels(weight: Arc<QTensor>, bias: Option<Tensor>, kernels: Kernels) -> Result<Linear> {
        let (out_features, in_features) = weight.shape().dims2()?;
        let tiled = kernels != Kernels::Exact && candle_tiles(weight.dtype(), out_features, in_features);
        let slow_in_candle = matches!(weight.dtype(), GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
        let to_q8 = || QTensor::quantize(&dequantize(&weight)?, GgmlDType::Q8_0);
        if kernels == Kernels::Blocks && own_tiles() {
            if let Some(blocks) = QMatrix::shared(weight.clone()).filter(QMatrix::tiles_fit) {
                let weight = Weight::Own { blocks: Arc::new(blocks) };
                return Ok(Linear { weight, bias, out_features, in_features, tiled: false });
            }
        }
        if tiled && kernels == Kernels::Blocks {
            if let Some(blocks) = QMatrix::shared(weight.clone()) {
                let tiles = QMatMul::from_arc(weight)?;
                return Ok(Linear { weight: Weight::Tiled { tiles, blocks: Arc::new(blocks) }, bias, out_features, in_features, tiled });
            }
        }
        let blocks = match kernels {
            Kernels::Blocks if weight.dtype() == GgmlDType::Q5_1 && in_features % 32 == 0 => {
                QMatrix::from_ggml(GgmlDType::Q8_0, &to_q8()?.data()?, out_features, in_features)
            }
            Kernels::Blocks if !tiled => QMatrix::from_ggml(weight.dtype(), &weight.data()?, out_features, in_features),
            Kernels::Blocks | Kernels::Candle | Kernels::Exact => None,
        };
        let weight = match blocks {
            Some(m) => Weight::Blocks(Arc::new(m)),
            // Float weights: candle's plain matmul is already the fast path.
            None if matches!(weight.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) => {
                Weight::Candle(QMatMul::Tensor(dequantize(&weight)?))
            }
            None if kernels == Kernels::Candle && slow_in_candle && in_features % 32 == 0 => {
                Weight::Candle(QMatMul::from_qtensor(to_q8()?)?)
            }
            None => Weight::Candle(QMatMul::from_arc(weight)?),
        };
        Ok(Linear { weight, bias, out_features, in_features, tiled })
    }

    /// Lays out the weight's prompt tiles now rather than in the first
    /// prompt (a scalar pass over the weight, single-threaded in candle,
    /// that writes as many bytes as it reads; callers warm several layers
    /// at once). Candle packs on its first multiplication, which
    /// [`forward`](Self::forward) only sends it for a prompt's
    /// [`SGEMM_MIN_ROWS`] rows or more: asked directly here, with two rows
    /// (candle tiles Q6_K for more than one).
    pub fn warm(&self) -> Result<()> {
        match &self.weight {
            Weight::Tiled { tiles, .. } => {
                tiles.forward(&Tensor::zeros((2, self.in_features), candle_core::DType::F32, &Device::Cpu)?)?;
            }
            Weight::Candle(m) if self.tiled => {
                m.forward(&Tensor::zeros((2, self.in_features), candle_core::DType::F32, &Device::Cpu)?)?;
            }
            Weight::Blocks(_) | Weight::Own { .. } | Weight::Candle(_) => {}
        }
        Ok(())
    }

    /// One layer computing all of `parts` (which share their input) at
    /// once, their outputs side by side; None unless all are blocks of one
    /// type, with biases on all or none.
    pub fn stack(parts: &[&Linear]) -> Result<Option<Linear>> {
        let mut blocks = Vec::with_capacity(parts.len());
        for p in parts {
            match &p.weight {
                Weight::Blocks(m) => blocks.push(m.as_ref()),
                Weight::Tiled { .. } | Weight::Own { .. } | Weight::Candle(_) => return Ok(None),
            }
        }
        let Some(m) = QMatrix::stack(&blocks) else { return Ok(None) };
        let biases: Vec<&Tensor> = parts.iter().filter_map(|p| p.bias.as_ref()).collect();
        let bias = match biases.len() {
            0 => None,
            n if n == parts.len() => Some(Tensor::cat(&biases, 0)?),
            _ => return Ok(None),
        };
        Ok(Some(Linear { out_features: m.rows(), in_features: parts[0].in_features, weight: Weight::Blocks(Arc::new(m)), bias, tiled: false }))
    }

    /// Rows of the weight picked by `ids` (an embedding table), with one
    /// more dimension than `ids`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let m = match &self.weight {
            Weight::Blocks(m) | Weight::Tiled { blocks: m, .. } | Weight::Own { blocks: m, .. } => m,
            Weight::Candle(q) => return q.embedding(ids),
        };
        let flat = ids.flatten_all()?.to_vec1::<u32>()?;
        let mut out = vec![0f32; flat.len() * self.in_features];
        for (&id, row) in flat.iter().zip(out.chunks_exact_mut(self.in_features)) {
            if id as usize >= self.out_features {
                candle_core::bail!("token id {id} is outside the vocabulary of {}", self.out_features);
            }
            m.rows_f32(id as usize, row);
        }
        let mut dims = ids.dims().to_vec();
        dims.push(self.in_features);
        Tensor::from_vec(out, dims, &Device::Cpu)
    }

    /// Whether a few rows at once give each row what it gives alone (ask's
    /// kernels run this weight for fewer than [`SGEMM_MIN_ROWS`] rows).
    pub fn rows_exact(&self) -> bool {
        self.row_blocks().is_some()
    }

    /// Whether ask's kernel for this weight holds several activation rows
    /// in 512-bit registers on this CPU (see [`QMatrix::wide`]).
    pub fn wide(&self) -> bool {
        self.row_blocks().is_some_and(QMatrix::wide)
    }

    /// The weight's bytes as stored.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            Weight::Blocks(m) | Weight::Tiled { blocks: m, .. } | Weight::Own { blocks: m, .. } => m.bytes(),
            Weight::Candle(_) => self.out_features * self.in_features,
        }
    }

    /// The blocks ask's kernels run for one row, if any.
    fn row_blocks(&self) -> Option<&QMatrix> {
        match &self.weight {
            Weight::Blocks(m) | Weight::Tiled { blocks: m, .. } | Weight::Own { blocks: m, .. } => Some(m),
            Weight::Candle(_) => None,
        }
    }

    /// `[p.forward(x) for p in parts]`, for layers that share their input
    /// (q, k and v of different block types, say): one parallel region
    /// for all when x has fewer than [`SGEMM_MIN_ROWS`] rows and ask's
    /// kernels run each part.
    pub fn forward_many(parts: &[&Linear], x: &Tensor) -> Result<Vec<Tensor>> {
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
        let blocks: Option<Vec<&QMatrix>> = parts.iter().map(|p| p.row_blocks()).collect();
        let Some(blocks) = blocks.filter(|_| rows < SGEMM_MIN_ROWS) else { return parts.iter().map(|p| p.forward(x)).collect() };
        let ys = by_rows(x, &blocks)?;
        parts
            .iter()
            .zip(ys)
            .map(|(p, y)| {
                let mut dims = x.dims().to_vec();
                *dims.last_mut().expect("rank >= 1") = p.out_features;
                let y = y.reshape(dims)?;
                match &p.bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            })
            .collect()
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.elem_count() / self.in_features;
        let mut out_dims = x.dims().to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.out_features;
        let y = match &self.weight {
            Weight::Blocks(m) if rows >= SGEMM_MIN_ROWS => {
                matmul_by_tiles(x, self.out_features, &|r0, out| m.rows_f32(r0, out))?.reshape(out_dims)?
            }
            Weight::Blocks(m) => by_rows(x, &[m])?.remove(0).reshape(out_dims)?,
            Weight::Tiled { blocks, .. } | Weight::Own { blocks, .. } if rows < SGEMM_MIN_ROWS => {
                by_rows(x, &[blocks])?.remove(0).reshape(out_dims)?
            }
            Weight::Tiled { tiles, .. } => tiles.forward(x)?,
            Weight::Own { blocks } => {
                let x = x.flatten_all()?.to_vec1::<f32>()?;
                let mut y = vec![0f32; rows * self.out_features];
                blocks.tiled_matmul(&x, rows, &mut y);
                Tensor::from_vec(y, out_dims, &Device::Cpu)?
            }
            Weight::Candle(QMatMul::QTensor(w)) if rows >= SGEMM_MIN_ROWS && !self.tiled => {
                let data = w.data()?;
                if let Some(read) = row_reader(w.dtype(), &data, self.in_features) {
                    matmul_by_tiles(x, self.out_features, &|r0, out| read(&data, self.in_features, r0, out))?.reshape(out_dims)?
                } else {
                    let w = dequantize(w)?;
                    x.reshape((rows, self.in_features))?.matmul(&w.t()?)?.reshape(out_dims)?
                }
            }
            Weight::Candle(m) => m.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x · Wᵀ` for every W of `ws` (which share x's width) through ask's
/// kernels: each row of x is quantized once, and up to
/// [`matvec::MAX_ROWS`](crate::matvec::MAX_ROWS) rows go through all of
/// `ws` in one parallel region, each weight read once for them. A row's
/// results do not depend on the rows beside it.
fn by_rows(x: &Tensor, ws: &[&QMatrix]) -> Result<Vec<Tensor>> {
    let in_features = x.dim(candle_core::D::Minus1)?;
    let rows = x.elem_count() / in_features;
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let acts: Vec<Acts> = xs
        .chunks_exact(in_features)
        .map(|x| {
            let mut a = Acts::default();
            a.quantize(x);
            a
        })
        .collect();
    let mut ys: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; rows * w.rows()]).collect();
    for (c, chunk) in acts.chunks(crate::matvec::MAX_ROWS).enumerate() {
        let (i0, n) = (c * crate::matvec::MAX_ROWS, chunk.len());
        let mut parts: Vec<(&QMatrix, &mut [f32])> =
            ws.iter().zip(ys.iter_mut()).map(|(w, y)| (*w, &mut y[i0 * w.rows()..(i0 + n) * w.rows()])).collect();
        QMatrix::matvec_parts(&mut parts, chunk);
    }
    ws.iter().zip(ys).map(|(w, y)| Tensor::from_vec(y, (rows, w.rows()), &Device::Cpu)).collect()
}

/// Weight rows dequantized per tile, at most this many at a time (with
/// 2,048 inputs a tile is 2 MiB of f32, which stays in a core's L2).
const TILE_ROWS: usize = 256;

/// `x · Wᵀ` for many rows of `x` (rows × in) with a quantized W (out × in),
/// without ever holding W in f32: W's rows are dequantized a tile at a
/// time, into a buffer each thread keeps, and multiplied by gemm's sgemm
/// into the tile's columns of the result. Materializing W instead cost a
/// fresh allocation of 4 bytes per weight for every prompt, and the kernel
/// zeroing those pages was 15% of Gemma 3's prefill.
/// `rows_f32(r0, out)` fills `out` with the rows from `r0` on.
fn matmul_by_tiles(x: &Tensor, out_features: usize, rows_f32: &(dyn Fn(usize, &mut [f32]) + Sync)) -> Result<Tensor> {
    let in_features = x.dim(candle_core::D::Minus1)?;
    let rows = x.elem_count() / in_features;
    let x = x.reshape((rows, in_features))?.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let xs = crate::ops::cpu_f32s(&storage, layout, rows * in_features)?;
    let threads = rayon::current_num_threads().max(1);
    // A multiple of the thread count, each tile at most TILE_ROWS rows.
    let tiles = threads * out_features.div_ceil(threads * TILE_ROWS);
    let tile = out_features.div_ceil(tiles);
    let mut y = vec![0f32; rows * out_features];
    let dst = y.as_mut_ptr() as usize;
    thread_local! {
        static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    (0..out_features.div_ceil(tile)).into_par_iter().for_each(|t| {
        let r0 = t * tile;
        let n = tile.min(out_features - r0);
        TILE.with_borrow_mut(|w| {
            w.resize(n * in_features, 0.0);
            rows_f32(r0, &mut w[..n * in_features]);
            // SAFETY: y is rows × out_features, row-major; this task
            // writes only columns r0..r0 + n of it, and no other task
            // writes those. xs holds rows × in_features values, w holds
            // n rows of in_features (read as the in_features × n right
            // side through its strides).
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    in_features,
                    (dst as *mut f32).add(r0),
                    1,
                    out_features as isize,
                    false,
                    xs.as_ptr(),
                    1,
                    in_features as isize,
                    w.as_ptr(),
                    in_features as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        });
    });
    drop(storage);
    Tensor::from_vec(y, (rows, out_features), &Device::Cpu)
}

/// Fills `out` with rows `r0..` of a tensor's bytes, as many as fit.
type RowReader = fn(data: &[u8], cols: usize, r0: usize, out: &mut [f32]);

/// A reader of rows (of `cols` values) for a tensor of `dtype` stored in
/// `data`, through candle's `to_float`: for the K-quants, whose rows are
/// whole blocks, when the bytes are aligned for them; None otherwise.
fn row_reader(dtype: GgmlDType, data: &[u8], cols: usize) -> Option<RowReader> {
    fn rows<T: GgmlType>(data: &[u8], cols: usize, r0: usize, out: &mut [f32]) {
        // SAFETY: as in par_to_float; `reader` checked the alignment.
        let (_, blocks, _) = unsafe { data.align_to::<T>() };
        let per_row = cols / T::BLCK_SIZE;
        let n = out.len() / cols;
        T::to_float(&blocks[r0 * per_row..(r0 + n) * per_row], out);
    }
    fn reader<T: GgmlType>(data: &[u8], cols: usize) -> Option<RowReader> {
        // SAFETY: only the alignment is looked at.
        let (head, _, _) = unsafe { data.align_to::<T>() };
        (head.is_empty() && cols.is_multiple_of(T::BLCK_SIZE)).then_some(rows::<T> as RowReader)
    }
    match dtype {
        GgmlDType::Q2K => reader::<k_quants::BlockQ2K>(data, cols),
        GgmlDType::Q3K => reader::<k_quants::BlockQ3K>(data, cols),
        GgmlDType::Q4K => reader::<k_quants::BlockQ4K>(data, cols),
        GgmlDType::Q5K => reader::<k_quants::BlockQ5K>(data, cols),
        GgmlDType::Q6K => reader::<k_quants::BlockQ6K>(data, cols),
        _ => None,
    }
}

/// Dequantizes a CPU tensor to f32, splitting the work across threads.
pub fn dequantize(t: &QTensor) -> Result<Tensor> {
    let n = t.shape().elem_count();
    let data = t.data()?;
    let mut out = vec![0f32; n];
    let done = match t.dtype() {
        GgmlDType::F32 => par_to_float::<f32>(&data, &mut out),
        GgmlDType::F16 => par_to_float::<half::f16>(&data, &mut out),
        GgmlDType::BF16 => par_to_float::<half::bf16>(&data, &mut out),
        GgmlDType::Q4_0 => par_to_float::<k_quants::BlockQ4_0>(&data, &mut out),
        GgmlDType::Q4_1 => par_to_float::<k_quants::BlockQ4_1>(&data, &mut out),
        GgmlDType::Q5_0 => par_to_float::<k_quants::BlockQ5_0>(&data, &mut out),
        GgmlDType::Q5_1 => par_to_float::<k_quants::BlockQ5_1>(&data, &mut out),
        GgmlDType::Q8_0 => par_to_float::<k_quants::BlockQ8_0>(&data, &mut out),
        GgmlDType::Q2K => par_to_float::<k_quants::BlockQ2K>(&data, &mut out),
        GgmlDType::Q3K => par_to_float::<k_quants::BlockQ3K>(&data, &mut out),
        GgmlDType::Q4K => par_to_float::<k_quants::BlockQ4K>(&data, &mut out),
        GgmlDType::Q5K => par_to_float::<k_quants::BlockQ5K>(&data, &mut out),
        GgmlDType::Q6K => par_to_float::<k_quants::BlockQ6K>(&data, &mut out),
        _ => false,
    };
    if !done {
        return t.dequantize(&Device::Cpu);
    }
    Tensor::from_vec(out, t.shape(), &Device::Cpu)
}

/// `T::to_float` over chunks of blocks in parallel; false when the bytes
/// are not aligned for `T` (the caller then takes candle's serial path).
fn par_to_float<T: GgmlType + Sync>(data: &[u8], out: &mut [f32]) -> bool {
    // SAFETY: GGML block types are plain-old-data structs (`repr(C)`) of
    // integers and halves; every bit pattern is a valid value.
    let (head, blocks, tail) = unsafe { data.align_to::<T>() };
    if !head.is_empty() || !tail.is_empty() || blocks.len() * T::BLCK_SIZE != out.len() {
        return false;
    }
    const BLOCKS_PER_TASK: usize = 1024;
    out.par_chunks_mut(BLOCKS_PER_TASK * T::BLCK_SIZE)
        .zip(blocks.par_chunks(BLOCKS_PER_TASK))
        .for_each(|(ys, xs)| T::to_float(xs, ys));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn parallel_dequantize_matches_candle() {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let q = QTensor::quantize(&ramp(64, 512), dtype).unwrap();
            let ours = dequantize(&q).unwrap();
            let theirs = q.dequantize(&Device::Cpu).unwrap();
            assert_eq!(max_abs_diff(&ours, &theirs), 0.0, "{dtype:?}");
        }
    }

    #[test]
    fn prefill_and_decode_paths_agree() {
        // One weight, three ways: the many-row path (sgemm on its tiles
        // dequantized, or candle's repacked integer tiles for K-quants
        // whose rows are a multiple of 16), the decode kernel (one row),
        // and f32 weights in candle's matmul; 600 output rows make several
        // sgemm tiles, 640 are candle's tiles. Q4_1 runs ask's block
        // kernels or (as arm64 builds do) candle's on Q8_0; Q4K and Q6K
        // run candle's either way, or ask's own prompt tiles on CPUs
        // without VNNI (`MISTRALRS_FORCE_AVX2=1` tries those anywhere).
        for (dtype, out) in [(GgmlDType::Q4_1, 600), (GgmlDType::Q4K, 600), (GgmlDType::Q6K, 600), (GgmlDType::Q4K, 640), (GgmlDType::Q6K, 640)] {
            for kernels in [Kernels::Blocks, Kernels::Candle] {
                let q = QTensor::quantize(&ramp(out, 256), dtype).unwrap();
                let reference = q.dequantize(&Device::Cpu).unwrap();
                let lin = Linear::with_kernels(Arc::new(q), None, kernels).unwrap();
                // ask's own tiles where candle's would be on their AVX2 tier.
                let own = matches!(lin.weight, Weight::Own { .. });
                assert_eq!(own, own_tiles() && kernels == Kernels::Blocks && dtype != GgmlDType::Q4_1, "{dtype:?} {out}");
                assert_eq!(lin.tiled, !own && cfg!(target_arch = "x86_64") && out == 640, "{dtype:?} {out}");
                let x = ramp(SGEMM_MIN_ROWS, 256);
                let many = lin.forward(&x).unwrap();
                let exact = x.matmul(&reference.t().unwrap()).unwrap();
                let scale = exact.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let diff = max_abs_diff(&many, &exact);
                // Candle's Q8_0 copy of a Q4_1 weight rounds it once more;
                // its tiles quantize the activations to 8 bits.
                let tolerance = if lin.tiled || own || (dtype == GgmlDType::Q4_1 && !matches!(lin.weight, Weight::Blocks(_))) { 0.02 } else { 1e-4 };
                assert!(diff <= tolerance * scale, "{dtype:?} {kernels:?}: prefill diff {diff} against {scale}");
                let one = lin.forward(&x.narrow(0, 3, 1).unwrap()).unwrap();
                let diff = max_abs_diff(&exact.narrow(0, 3, 1).unwrap(), &one);
                // The decode path quantizes the activations to 8 bits.
                assert!(diff <= 0.02 * scale, "{dtype:?} {kernels:?}: decode diff {diff} against {scale}");
            }
        }
    }
}

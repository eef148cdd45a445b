//! Quantized linear layers that are fast on both sides of generation.
//!
//! Prefill multiplies many rows by each weight, so it is compute-bound:
//! there the weight is dequantized to f32 on the fly (in parallel, one
//! layer at a time) and multiplied by gemm's AVX2/AVX-512 sgemm, which is
//! several times faster than quantized dot products. Decode multiplies one
//! row, so it is memory-bound: there the weight stays in its blocks and
//! ask's own kernels ([`crate::matvec`]) read them as stored, for Q4_0,
//! Q4_1, Q5_0 and Q8_0 (Q5_1, rare, is moved to Q8_0 at load). Other types
//! (the K-quants, floats) go through candle's `QMatMul`, which has SIMD
//! kernels for them.

use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use rayon::prelude::*;

use crate::matvec::{quantize_row, QMatrix};

/// Rows at or above which a matmul goes through f32 sgemm.
pub const SGEMM_MIN_ROWS: usize = 16;

#[derive(Clone)]
enum Weight {
    /// Blocks that [`crate::matvec`] runs.
    Blocks(Arc<QMatrix>),
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
}

impl Linear {
    /// `fast`: decode through ask's block kernels where the type has one
    /// (always, but in tests that compare every matmul in f32 against
    /// another implementation).
    pub fn new(weight: Arc<QTensor>, bias: Option<Tensor>, fast: bool) -> Result<Linear> {
        let (out_features, in_features) = weight.shape().dims2()?;
        let blocks = || -> Result<Option<QMatrix>> {
            if weight.dtype() == GgmlDType::Q5_1 && in_features % 32 == 0 {
                let q8 = QTensor::quantize(&dequantize(&weight)?, GgmlDType::Q8_0)?;
                return Ok(QMatrix::from_ggml(GgmlDType::Q8_0, &q8.data()?, out_features, in_features));
            }
            Ok(QMatrix::from_ggml(weight.dtype(), &weight.data()?, out_features, in_features))
        };
        let weight = match if fast { blocks()? } else { None } {
            Some(m) => Weight::Blocks(Arc::new(m)),
            // Float weights: candle's plain matmul is already the fast path.
            None if matches!(weight.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) => {
                Weight::Candle(QMatMul::Tensor(dequantize(&weight)?))
            }
            None => Weight::Candle(QMatMul::from_arc(weight)?),
        };
        Ok(Linear { weight, bias, out_features, in_features })
    }

    /// One layer computing all of `parts` (which share their input) at
    /// once, their outputs side by side; None unless all are blocks of one
    /// type, with biases on all or none.
    pub fn stack(parts: &[&Linear]) -> Result<Option<Linear>> {
        let mut blocks = Vec::with_capacity(parts.len());
        for p in parts {
            match &p.weight {
                Weight::Blocks(m) => blocks.push(m.as_ref()),
                Weight::Candle(_) => return Ok(None),
            }
        }
        let Some(m) = QMatrix::stack(&blocks) else { return Ok(None) };
        let biases: Vec<&Tensor> = parts.iter().filter_map(|p| p.bias.as_ref()).collect();
        let bias = match biases.len() {
            0 => None,
            n if n == parts.len() => Some(Tensor::cat(&biases, 0)?),
            _ => return Ok(None),
        };
        Ok(Some(Linear { out_features: m.rows(), in_features: parts[0].in_features, weight: Weight::Blocks(Arc::new(m)), bias }))
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Rows of the weight picked by `ids` (an embedding table), with one
    /// more dimension than `ids`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let m = match &self.weight {
            Weight::Blocks(m) => m,
            Weight::Candle(q) => return q.embedding(ids),
        };
        let flat = ids.flatten_all()?.to_vec1::<u32>()?;
        let mut out = vec![0f32; flat.len() * self.in_features];
        for (&id, row) in flat.iter().zip(out.chunks_exact_mut(self.in_features)) {
            if id as usize >= self.out_features {
                candle_core::bail!("token id {id} is outside the vocabulary of {}", self.out_features);
            }
            m.row(id as usize, row);
        }
        let mut dims = ids.dims().to_vec();
        dims.push(self.in_features);
        Tensor::from_vec(out, dims, &Device::Cpu)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.elem_count() / self.in_features;
        let mut out_dims = x.dims().to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.out_features;
        let y = match &self.weight {
            Weight::Blocks(m) if rows >= SGEMM_MIN_ROWS => {
                let w = Tensor::from_vec(m.dequantize(), (self.out_features, self.in_features), &Device::Cpu)?;
                x.reshape((rows, self.in_features))?.matmul(&w.t()?)?.reshape(out_dims)?
            }
            Weight::Blocks(m) => {
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let mut ys = vec![0f32; rows * self.out_features];
                let mut act = Vec::new();
                for (x, y) in xs.chunks_exact(self.in_features).zip(ys.chunks_exact_mut(self.out_features)) {
                    quantize_row(x, &mut act);
                    m.matvec(&act, y);
                }
                Tensor::from_vec(ys, out_dims, &Device::Cpu)?
            }
            Weight::Candle(QMatMul::QTensor(w)) if rows >= SGEMM_MIN_ROWS => {
                let w = dequantize(w)?;
                x.reshape((rows, self.in_features))?.matmul(&w.t()?)?.reshape(out_dims)?
            }
            Weight::Candle(m) => m.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
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
        // One weight, two ways: sgemm on the dequantized weight (many rows)
        // and candle's quantized kernel (one row) must give the same row.
        let w = QTensor::quantize(&ramp(96, 256), GgmlDType::Q4_1).unwrap();
        let lin = Linear::new(Arc::new(w), None, true).unwrap();
        let x = ramp(SGEMM_MIN_ROWS, 256);
        let many = lin.forward(&x).unwrap();
        let one = lin.forward(&x.narrow(0, 3, 1).unwrap()).unwrap();
        let diff = max_abs_diff(&many.narrow(0, 3, 1).unwrap(), &one);
        let scale = one.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // The decode path quantizes the activations to 8 bits.
        assert!(diff <= 0.02 * scale, "diff {diff} against magnitude {scale}");
    }
}


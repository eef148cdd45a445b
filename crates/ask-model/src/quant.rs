//! Quantized linear layers that are fast on both sides of generation.
//!
//! Prefill multiplies many rows by each weight, so it is compute-bound:
//! there the weight is dequantized to f32 on the fly (in parallel, one
//! layer at a time) and multiplied by gemm's AVX2/AVX-512 sgemm, which is
//! several times faster than candle's quantized dot products. Decode
//! multiplies one row, so it is memory-bound: there the weight stays
//! quantized and candle's block dot products run on its spinning thread
//! pool (a rayon version here was slower: waking rayon's sleeping workers
//! for each of ~200 small matmuls per token costs more than the work).
//! candle 0.11 has only scalar code for Q4_1, Q5_0 and Q5_1, so those are
//! requantized to Q8_0 at load (8-bit error, far below the 4- or 5-bit
//! error already in the weights), which also reaches candle's AVX-512 VNNI
//! kernels where the shapes allow.

use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use rayon::prelude::*;

/// Rows at or above which a matmul goes through f32 sgemm.
pub const SGEMM_MIN_ROWS: usize = 16;

/// Quantized types whose candle CPU kernels are scalar.
fn slow_on_cpu(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// A weight matrix (out × in) and an optional bias.
#[derive(Clone)]
pub struct Linear {
    /// `QMatMul::QTensor` for quantized weights, `Tensor` for float ones.
    matmul: QMatMul,
    bias: Option<Tensor>,
    out_features: usize,
    in_features: usize,
}

impl Linear {
    /// `requantize`: move types with scalar kernels to Q8_0 (always, but
    /// in tests that compare against other implementations bit for bit).
    /// A weight that is kept as it is stays shared with other users (tied
    /// embeddings) rather than copied.
    pub fn new(weight: Arc<QTensor>, bias: Option<Tensor>, requantize: bool) -> Result<Linear> {
        let (out_features, in_features) = weight.shape().dims2()?;
        let weight = if requantize && slow_on_cpu(weight.dtype()) && in_features % 32 == 0 {
            Arc::new(QTensor::quantize(&dequantize(&weight)?, GgmlDType::Q8_0)?)
        } else {
            weight
        };
        let matmul = match weight.dtype() {
            // Float weights: candle's plain matmul is already the fast path.
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => QMatMul::Tensor(dequantize(&weight)?),
            _ => QMatMul::from_arc(weight)?,
        };
        Ok(Linear { matmul, bias, out_features, in_features })
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.elem_count() / self.in_features;
        let y = match &self.matmul {
            QMatMul::QTensor(w) if rows >= SGEMM_MIN_ROWS => {
                let mut out_dims = x.dims().to_vec();
                *out_dims.last_mut().expect("rank >= 1") = self.out_features;
                let w = dequantize(w)?;
                x.reshape((rows, self.in_features))?.matmul(&w.t()?)?.reshape(out_dims)?
            }
            m => m.forward(x)?,
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

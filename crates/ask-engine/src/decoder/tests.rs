//! Tests of `decoder`: its layers against candle-transformers' and f32 weights, on the real small models.

use super::*;
use candle_transformers::models::quantized_llama;

fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    let num: f32 = ours.iter().zip(theirs).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f32 = theirs.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap()
}

fn open(path: &std::path::Path) -> (gguf_file::Content, std::io::BufReader<std::fs::File>) {
    let mut r = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let ct = gguf_file::Content::read(&mut r).unwrap();
    (ct, r)
}

/// The GGUF file at `path` with every tensor dequantized to f32, in
/// memory: models loaded from it run every matmul in f32 on the same
/// weights. (Not candle's CANDLE_DEQUANTIZE_ALL switch: setting a
/// process-wide variable races with the tests running beside this one.)
fn f32_copy(path: &std::path::Path) -> (gguf_file::Content, std::io::Cursor<Vec<u8>>) {
    let (ct, mut r) = open(path);
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = ct
        .tensor_infos
        .keys()
        .map(|name| {
            let q = ct.tensor(&mut r, name, &Device::Cpu).unwrap();
            let f = q.dequantize(&Device::Cpu).unwrap();
            (name.clone(), candle_core::quantized::QTensor::quantize(&f, candle_core::quantized::GgmlDType::F32).unwrap())
        })
        .collect();
    let metadata: Vec<(&str, &gguf_file::Value)> = ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &candle_core::quantized::QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut bytes = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut bytes, &metadata, &refs).unwrap();
    bytes.set_position(0);
    let ct = gguf_file::Content::read(&mut bytes).unwrap();
    (ct, bytes)
}

/// candle-transformers' llama, written independently of this file, is
/// the reference. With the same f32 weights the two agree exactly;
/// ask's fast paths (tiled sgemm prefill, fused attention, block
/// kernels with 8-bit activations in decode) must pick the same next
/// token with logits within a few percent.
#[test]
fn llama_logits_match_candle_transformers() {
    let path = crate::fetched_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let (ct, mut r) = f32_copy(&path);
    let mut exact = Decoder::load(&ct, &mut r, "llama", 1024, false).unwrap();
    let mut theirs = quantized_llama::ModelWeights::from_gguf(ct, &mut r, &Device::Cpu).unwrap();
    let (ct, mut r) = open(&path);
    let mut ours = Decoder::from_gguf(&ct, &mut r, "llama", 1024).unwrap();

    use candle_core::quantized::tokenizer::TokenizerFromGguf;
    let tokenizer = tokenizers::Tokenizer::from_gguf(&ct).unwrap();
    // Long enough for several attention chunks (and sgemm prefill).
    let text = "The lighthouse keeper kept a log of every ship that passed the rocks at night, and of the weather. ".repeat(30);
    let ids = tokenizer.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    assert!(ids.len() > 4 * ATTN_CHUNK, "{} tokens", ids.len());
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let reference = theirs.forward(&input, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let e = exact.forward(&input, 0).unwrap().to_vec1::<f32>().unwrap();
    assert!(relative_error(&e, &reference) < 1e-5, "same weights, different logits");
    let a = ours.forward(&input, 0).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(argmax(&a), argmax(&reference));
    let err = relative_error(&a, &reference);
    assert!(err < 0.05, "prefill logits differ by {err}");

    // One decode step, through the KV cache.
    let next = Tensor::new(&[argmax(&reference) as u32], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let reference = theirs.forward(&next, ids.len()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let e = exact.forward(&next, ids.len()).unwrap().to_vec1::<f32>().unwrap();
    assert!(relative_error(&e, &reference) < 1e-5, "same weights, different logits");
    let a = ours.forward(&next, ids.len()).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(argmax(&a), argmax(&reference));
    let err = relative_error(&a, &reference);
    assert!(err < 0.05, "decode logits differ by {err}");

    // A new prompt at position 0 forgets the old one.
    let again = ours.forward(&input, 0).unwrap().to_vec1::<f32>().unwrap();
    let (ct, mut r) = open(&path);
    let first = Decoder::from_gguf(&ct, &mut r, "llama", 1024).unwrap().forward(&input, 0).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(again, first);
}

/// Gemma 3's local layers see only their window: changing the first
/// tokens leaves the attention output of every query more than a window
/// later exactly as it was, while a global layer's output changes. Runs
/// the real layers' attention on a prompt of several query chunks.
#[test]
fn local_layers_do_not_see_keys_older_than_their_window() {
    let (ct, mut r) = open(&crate::fetched_model("gemma-3-270m-q4_k_m.gguf"));
    let mut model = Decoder::from_gguf(&ct, &mut r, "gemma3", 2048).unwrap();
    let w = model.cfg.sliding_window.expect("Gemma 3 has local layers");
    let (n, changed) = (w + 2 * ATTN_CHUNK + 40, 8);
    let ids: Vec<u32> = (0..n as u32).map(|i| 100 + (i * 7919) % 20000).collect();
    let mut other = ids.clone();
    for id in &mut other[..changed] {
        *id += 1;
    }
    let local = model.layers.iter().position(|l| l.window.is_some()).unwrap();
    let global = model.layers.iter().position(|l| l.window.is_none()).unwrap();
    let mut run = |ids: &[u32], li: usize| -> Vec<Vec<f32>> {
        let input = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let x = (model.embed.embedding(&input).unwrap() * model.cfg.embed_scale.unwrap_or(1.0)).unwrap();
        let layer = &mut model.layers[li];
        layer.cache = KvCache { k: None, v: None, len: 0 };
        let h = layer.attn_norm.forward(&x).unwrap();
        let y = attention(&model.cfg, layer, &model.ropes[layer.rope], &h, 0).unwrap();
        y.squeeze(0).unwrap().to_vec2::<f32>().unwrap()
    };
    let (a, b) = (run(&ids, local), run(&other, local));
    // Query q sees keys q-w+1..=q: past the changed tokens from q = changed + w - 1.
    assert_eq!(a[changed + w - 1..], b[changed + w - 1..], "a local layer saw keys outside its window");
    assert_ne!(a[changed + w - 2], b[changed + w - 2], "the last query whose window holds a changed token");
    let (a, b) = (run(&ids, global), run(&other, global));
    assert_ne!(a[n - 1], b[n - 1], "a global layer sees every key");
}

/// A prompt longer than one query chunk gives the logits it gives when
/// fed in two uneven pieces: for llama, and for Gemma 3, whose local
/// layers see only a 512-token window. The matmuls are exact f32 here:
/// kernels that quantize activations to 8 bits (candle's K-quant
/// tiles) turn the last-bit differences of differently chunked
/// attention into rounding flips, which random tokens amplify to a few
/// percent of the logits; the kernels are tested in `quant`.
#[test]
fn chunked_prefill_matches_pieces() {
    for (file, arch) in [("SmolLM2-135M-Instruct.Q4_1.gguf", "llama"), ("gemma-3-270m-q4_k_m.gguf", "gemma3")] {
        let (ct, mut r) = open(&crate::fetched_model(file));
        let mut model = Decoder::load(&ct, &mut r, arch, 2048, false).unwrap();
        let n = 4 * ATTN_CHUNK + 40;
        let ids: Vec<u32> = (0..n as u32).map(|i| 100 + (i * 7919) % 20000).collect();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let chunked = model.forward(&input, 0).unwrap().to_vec1::<f32>().unwrap();
        // The same positions fed by hand: 300 tokens, then the rest.
        model.forward(&input.narrow(1, 0, 300).unwrap(), 0).unwrap();
        let pieces = model.forward(&input.narrow(1, 300, n - 300).unwrap(), 300).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(argmax(&chunked), argmax(&pieces), "{arch}");
        let err = relative_error(&chunked, &pieces);
        assert!(err < 1e-3, "{arch}: logits differ by {err}");
    }
}

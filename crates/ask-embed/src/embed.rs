//! The candle encoder and the [`Embedder`] that runs either backend.
//!
//! Inputs are sorted by length and batched so that little padding is
//! computed; padding is masked out of the pooling; vectors are L2-normalised
//! so that a dot product is the cosine similarity. Pooling (mean or CLS) and
//! query/passage prompts come from the sentence-transformers files beside the
//! model when they exist.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use crate::bert::{Bert, Config as EncoderConfig, Family};
use candle_transformers::models::nomic_bert::NomicBertModel;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use crate::ModelError;

use crate::encoder::{Backend, EncoderInfo, Pooling};

/// Padded tokens per forward pass through ask's candle model: 16 inputs
/// of 256 tokens, 64 of 64.
const BATCH_TOKENS: usize = 4096;
/// Padded tokens per forward pass through ONNX Runtime: 2 inputs of 256.
/// Its arena grows by doubling and keeps what it took, so larger passes
/// leave indexing at twice the memory, and were no faster; candle, which
/// keeps no arena, was slower with smaller passes and keeps its budget
/// (docs/design.md, "Memory with the default (ONNX) encoder").
const ONNX_BATCH_TOKENS: usize = 512;
/// Rows per forward pass, however short the inputs.
const MAX_BATCH_ROWS: usize = 64;

/// A loaded sentence encoder.
pub struct Embedder {
    model: Model,
    tokenizer: Tokenizer,
    info: EncoderInfo,
}

enum Model {
    Candle { model: Bert, device: Device },
    /// A nomic-bert GGUF file ([`crate::gguf`]).
    Nomic { model: NomicBertModel, device: Device },
    Onnx(crate::onnx::Session),
}

impl Model {
    /// One padded batch through a candle model: pooled, unit-length vectors.
    fn candle_batch(&self, pooling: Pooling, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Model::Candle { model, device } => forward_batch(device, pooling, seqs, |input, mask, padded| model.forward(input, padded.then_some(mask))),
            Model::Nomic { model, device } => forward_batch(device, pooling, seqs, |input, mask, _| model.forward(input, None, Some(mask))),
            Model::Onnx(_) => unreachable!("ONNX Runtime is given text"),
        }
    }
}

#[derive(Deserialize)]
struct ArchProbe {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize, Default)]
struct SentenceTransformersConfig {
    #[serde(default)]
    prompts: std::collections::HashMap<String, String>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str) -> Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::Missing { path: path.into(), what },
        _ => ModelError::Invalid { path: path.into(), message: e.to_string() },
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ModelError::Invalid { path: path.into(), message: format!("invalid {what}: {e}") })
}

fn optional_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str) -> Result<Option<T>, ModelError> {
    if path.exists() {
        read_json(path, what).map(Some)
    } else {
        Ok(None)
    }
}

/// Reads `tokenizer.json` of a model directory, without loading weights.
/// Chunking needs only this, so an incremental run that finds nothing to
/// embed never pays for the model.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer, ModelError> {
    if crate::gguf::is_gguf(dir) {
        return crate::gguf::tokenizer(dir);
    }
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        return Err(ModelError::Missing { path, what: "encoder tokenizer" });
    }
    Tokenizer::from_file(&path).map_err(|e| ModelError::Invalid { path, message: e.to_string() })
}

/// Reads what an encoder directory says about the model (its name,
/// dimensions and token limit), without loading weights.
pub fn probe(dir: &Path) -> Result<EncoderInfo, ModelError> {
    if crate::gguf::is_gguf(dir) {
        return crate::gguf::probe(dir);
    }
    read_config(dir).map(|(info, ..)| info)
}

/// [`probe`], and, for candle, the architecture's configuration the
/// weights load with.
fn read_config(dir: &Path) -> Result<(EncoderInfo, Option<(EncoderConfig, Family)>), ModelError> {
    let config_path = dir.join("config.json");
    let arch: ArchProbe = read_json(&config_path, "encoder config")?;
    let model_type = arch.model_type.clone().unwrap_or_default();
    let family = Family::of(&model_type, &arch.architectures);
    // safetensors weights run on ask's own model, which knows two
    // architectures; an ONNX graph carries its architecture with it.
    let backend = if dir.join("model.safetensors").exists() || crate::onnx::graph(dir).is_none() {
        Backend::Candle
    } else {
        Backend::Onnx
    };
    if family.is_none() && backend == Backend::Candle {
        return Err(ModelError::Unsupported {
            path: config_path,
            arch: if model_type.is_empty() { arch.architectures.join(",") } else { model_type },
            supported: "ask runs BERT-family encoders (model_type \"bert\": MiniLM, bge, e5, gte) and MPNet (\"mpnet\": all-mpnet-base-v2) from model.safetensors, and encoders of any architecture exported to model.onnx",
        });
    }
    let config: EncoderConfig = read_json(&config_path, "encoder config")?;
    let pooling = match optional_json::<PoolingConfig>(&dir.join("1_Pooling/config.json"), "pooling config")? {
        Some(p) if p.pooling_mode_cls_token => Pooling::Cls,
        _ => Pooling::Mean,
    };
    let st_max = optional_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"), "sentence-bert config")?
        .and_then(|c| c.max_seq_length);
    // Positions start at 0 (BERT) or after the padding id (MPNet); of an
    // architecture ask does not know, assume the later (RoBERTa's way).
    let first = match family {
        Some(f) => config.first_position(f),
        None => config.first_position(Family::MpNet),
    };
    let positions = config.max_position_embeddings.saturating_sub(first);
    let max_tokens = st_max.unwrap_or(positions).min(positions);
    let prompts = optional_json::<SentenceTransformersConfig>(
        &dir.join("config_sentence_transformers.json"),
        "sentence-transformers config",
    )?
    .unwrap_or_default()
    .prompts;
    let prompt = |keys: &[&str]| keys.iter().find_map(|k| prompts.get(*k).cloned()).unwrap_or_default();
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "encoder".into());
    let info = EncoderInfo {
        name,
        backend,
        dim: config.hidden_size,
        max_tokens,
        pooling,
        query_prefix: prompt(&["query"]),
        passage_prefix: prompt(&["passage", "document"]),
    };
    Ok((info, family.map(|f| (config, f))))
}

impl Embedder {
    /// Loads an encoder directory on the CPU.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        if crate::gguf::is_gguf(dir) {
            let (info, tokenizer, model) = crate::gguf::load(dir)?;
            return Embedder::new(Model::Nomic { model, device: Device::Cpu }, tokenizer, info);
        }
        let (info, arch) = read_config(dir)?;
        let tokenizer = load_tokenizer(dir)?;
        let model = match (info.backend, arch) {
            (Backend::Onnx, _) => {
                let graph = crate::onnx::graph(dir).expect("read_config found it");
                Model::Onnx(crate::onnx::Session::load(dir, &graph, &info, rayon::current_num_threads())?)
            }
            (Backend::Candle, Some((config, family))) => {
                let weights: PathBuf = dir.join("model.safetensors");
                if !weights.exists() {
                    return Err(ModelError::Missing { path: weights, what: "encoder weights" });
                }
                let device = Device::Cpu;
                // Read, not memory-mapped: candle copies every tensor out of
                // either, and a mapped file changed under us would be
                // undefined behaviour (this crate has no unsafe code).
                let bytes = std::fs::read(&weights)
                    .map_err(|e| ModelError::Invalid { path: weights.clone(), message: e.to_string() })?;
                let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
                    .map_err(|e| ModelError::Invalid { path: weights.clone(), message: e.to_string() })?;
                let model = Bert::load(vb, &config, family)
                    .map_err(|e| ModelError::Invalid { path: weights.clone(), message: e.to_string() })?;
                Model::Candle { model, device }
            }
            (Backend::Candle, None) => unreachable!("read_config refuses an unknown architecture for candle"),
        };
        Embedder::new(model, tokenizer, info)
    }

    /// The encoder of `model`, its inputs cut at the model's length.
    fn new(model: Model, mut tokenizer: Tokenizer, info: EncoderInfo) -> Result<Self, ModelError> {
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: info.max_tokens, ..Default::default() }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Embedder { model, tokenizer, info })
    }

    /// What this encoder is.
    pub fn info(&self) -> &EncoderInfo {
        &self.info
    }

    /// The encoder's tokenizer, truncating at the model's maximum length.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// How much of `text` the encoder reads as words, from 0 to 1: the
    /// share of its letters that the tokenizer does not cut off one at a
    /// time inside a longer word. An encoder whose vocabulary lacks a script (the
    /// English MiniLM and Arabic) spells its words letter by letter, and
    /// its vectors for them mean little; hybrid search then leans on the
    /// exact words instead (`ask_store::Query::reading`).
    pub fn reading(&self, text: &str) -> f32 {
        reading(&self.tokenizer, text)
    }

    /// Embeds one search query (with the model's query prompt).
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>, ModelError> {
        let text = format!("{}{}", self.info.query_prefix, query);
        Ok(self.embed_raw(&[text.as_str()])?.remove(0))
    }

    /// Embeds passages for the index (with the model's passage prompt).
    /// Returns the vectors in input order and the number of tokens computed.
    pub fn embed_passages(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize), ModelError> {
        if self.info.passage_prefix.is_empty() {
            return self.embed_counted(texts);
        }
        let prefixed: Vec<String> = texts.iter().map(|t| format!("{}{}", self.info.passage_prefix, t)).collect();
        let refs: Vec<&str> = prefixed.iter().map(String::as_str).collect();
        self.embed_counted(&refs)
    }

    /// Embeds texts as given, without any prompt.
    pub fn embed_raw(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.embed_counted(texts)?.0)
    }

    /// Tokenize, sort by length, batch, pool, normalise; also returns the
    /// number of tokens that went through the model (for throughput).
    fn embed_counted(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize), ModelError> {
        let ids: Vec<Vec<u32>> = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect();
        let tokens = ids.iter().map(Vec::len).sum();
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let vectors = match &self.model {
            Model::Candle { .. } | Model::Nomic { .. } => batched(&lengths, BATCH_TOKENS, |batch| {
                self.model.candle_batch(self.info.pooling, &batch.iter().map(|&i| ids[i].as_slice()).collect::<Vec<_>>())
            })?,
            // ONNX Runtime tokenizes again (fastembed takes text).
            Model::Onnx(session) => {
                batched(&lengths, ONNX_BATCH_TOKENS, |batch| session.embed(&batch.iter().map(|&i| texts[i]).collect::<Vec<_>>()))?
            }
        };
        Ok((vectors, tokens))
    }

    /// Embeds already tokenized inputs (special tokens included), in input
    /// order. ONNX Runtime is given text, so for it the ids are decoded first.
    pub fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        match &self.model {
            Model::Candle { .. } | Model::Nomic { .. } => batched(&lengths, BATCH_TOKENS, |batch| {
                self.model.candle_batch(self.info.pooling, &batch.iter().map(|&i| ids[i].as_slice()).collect::<Vec<_>>())
            }),
            Model::Onnx(session) => {
                let texts: Vec<String> = ids
                    .iter()
                    .map(|i| self.tokenizer.decode(i, true))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                batched(&lengths, ONNX_BATCH_TOKENS, |batch| session.embed(&batch.iter().map(|&i| texts[i].as_str()).collect::<Vec<_>>()))
            }
        }
    }
}

/// Runs `forward` over batches of inputs of similar length (given their
/// token `lengths`), at most `budget` padded tokens each (but one input
/// at least), returning one vector per input in input order.
fn batched(
    lengths: &[usize],
    budget: usize,
    mut forward: impl FnMut(&[usize]) -> Result<Vec<Vec<f32>>, ModelError>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    // Sorting by length means each batch pads to nearly its own length:
    // padding costs as much as real tokens in the forward pass.
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut out = vec![Vec::new(); lengths.len()];
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        // Sorted ascending, so the batch's longest input decides its rows:
        // a token budget keeps the [rows, heads, len, len] attention
        // tensors, and so peak memory, the same for short and long inputs.
        let mut rows = 1;
        while rows < rest.len() && rows < MAX_BATCH_ROWS && (rows + 1) * lengths[rest[rows]] <= budget {
            rows += 1;
        }
        let (batch, tail) = rest.split_at(rows);
        rest = tail;
        let vectors = forward(batch)?;
        for (&i, v) in batch.iter().zip(vectors) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// One padded batch through a candle model (`run` of the input ids, the
/// mask, and whether any row is padded): pooled, unit-length vectors.
fn forward_batch(
    device: &Device,
    pooling: Pooling,
    seqs: &[&[u32]],
    run: impl Fn(&Tensor, &Tensor, bool) -> candle_core::Result<Tensor>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    let n = seqs.len();
    let mut input = vec![0u32; n * len];
    let mut mask = vec![0u32; n * len];
    for (row, seq) in seqs.iter().enumerate() {
        input[row * len..row * len + seq.len()].copy_from_slice(seq);
        mask[row * len..row * len + seq.len()].fill(1);
    }
    let padded = seqs.iter().any(|s| s.len() != len);
    let input = Tensor::from_vec(input, (n, len), device)?;
    let mask = Tensor::from_vec(mask, (n, len), device)?;
    let hidden = run(&input, &mask, padded)?;
    let pooled = pool(&hidden, &mask, pooling)?;
    Ok(l2_normalize(&pooled)?.to_vec2::<f32>()?)
}

/// Pools token vectors `[batch, seq, hidden]` into `[batch, hidden]`,
/// ignoring positions where `mask` is 0.
pub(crate) fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Mean => {
            let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
            summed.broadcast_div(&counts)
        }
    }
}

/// Scales each row to unit length.
pub(crate) fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

/// [`Embedder::reading`] with `tokenizer`: 1 minus the share of the
/// text's letters that the tokenizer cut off one at a time, as a piece of
/// a longer word (a one-letter word such as "a" is read). Word-piece
/// (`##`), SentencePiece (`▁`) and byte-level (`Ġ`) markers are not
/// letters.
fn reading(tokenizer: &Tokenizer, text: &str) -> f32 {
    let Ok(e) = tokenizer.encode(text, false) else { return 1.0 };
    let ids = e.get_word_ids();
    let mut pieces: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for word in ids.iter().flatten() {
        *pieces.entry(*word).or_default() += 1;
    }
    let (mut letters, mut spelled) = (0usize, 0usize);
    for (token, word) in e.get_tokens().iter().zip(ids) {
        let Some(word) = word else { continue };
        let piece = token.trim_start_matches("##").trim_start_matches('▁').trim_start_matches('Ġ');
        let n = piece.chars().filter(|c| c.is_alphabetic()).count();
        letters += n;
        if n == 1 && piece.chars().count() == 1 && pieces[word] > 1 {
            spelled += 1;
        }
    }
    if letters == 0 {
        return 1.0;
    }
    1.0 - spelled as f32 / letters as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding() {
        let dev = Device::Cpu;
        // Two sequences of length 3; the second has one padding position
        // holding a large value that must not leak into its mean.
        let hidden = Tensor::new(
            &[[[1f32, 2.], [3., 4.], [5., 6.]], [[2., 2.], [4., 6.], [100., 100.]]],
            &dev,
        )
        .unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &dev).unwrap();
        let pooled = pool(&hidden, &mask, Pooling::Mean).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled, vec![vec![3., 4.], vec![3., 4.]]);
        let cls = pool(&hidden, &mask, Pooling::Cls).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(cls, vec![vec![1., 2.], vec![2., 2.]]);
    }

    #[test]
    fn normalised_rows_have_unit_length() {
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        let n = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(n[0], vec![0.6, 0.8]);
        assert_eq!(n[1], vec![0., 0.]);
    }

    #[test]
    fn non_bert_encoders_are_refused_by_architecture() {
        let dir = tempfile_dir();
        std::fs::write(dir.join("config.json"), r#"{"model_type":"xlm-roberta","architectures":["XLMRobertaModel"]}"#).unwrap();
        let err = probe(&dir).unwrap_err().to_string();
        assert!(err.contains("unsupported architecture 'xlm-roberta'"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_directory_names_the_file() {
        // What is missing, and where; the fix (scripts/fetch-models) is the
        // binary's to give (tests/index.rs checks that it does).
        let err = Embedder::load(Path::new("/nonexistent/encoder")).err().unwrap();
        assert!(matches!(&err, ModelError::Missing { path, .. } if path.ends_with("config.json")), "{err}");
        assert!(err.to_string().contains("/nonexistent/encoder/config.json"), "{err}");
    }

    /// `model`'s vectors against those of an independent NumPy
    /// implementation (scripts/reference-embedding.py) in `fixture`.
    fn check_reference(model: &str, fixture: &str, dim: usize, max_tokens: usize) {
        #[derive(Deserialize)]
        struct Reference {
            embeddings: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            text: String,
            vector: Vec<f32>,
        }
        // Read at run time: a test binary reused from a clone elsewhere (one
        // shared CARGO_TARGET_DIR) would carry that clone's path.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let path = manifest.join("../../fixtures/reference").join(fixture);
        let reference: Reference = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let dir = ask_engine::fetched_model(model);
        assert!(dir.join("model.safetensors").exists(), "{} is missing: run scripts/fetch-models", dir.display());
        let embedder = Embedder::load(&dir).unwrap();
        assert_eq!(embedder.info().dim, dim);
        assert_eq!(embedder.info().max_tokens, max_tokens);
        // One batch of different lengths: padding and re-ordering must not leak.
        let texts: Vec<&str> = reference.embeddings.iter().map(|e| e.text.as_str()).collect();
        let got = embedder.embed_raw(&texts).unwrap();
        for (entry, vector) in reference.embeddings.iter().zip(&got) {
            let cos: f32 = entry.vector.iter().zip(vector).map(|(a, b)| a * b).sum();
            let max_diff = entry.vector.iter().zip(vector).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(cos > 0.9999 && max_diff < 1e-3, "{:?}: cos {cos}, max diff {max_diff}", entry.text);
        }
        // Alone, a text gets the same vector as in a padded batch.
        let alone = embedder.embed_raw(&texts[2..]).unwrap();
        let diff = alone[0].iter().zip(&got[2]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "padding changed the vector by {diff}");
    }

    #[test]
    fn the_english_encoder_reads_english_words_and_spells_out_arabic_ones() {
        let tokenizer = load_tokenizer(&ask_engine::fetched_model("all-MiniLM-L6-v2-int8")).unwrap();
        // English, identifiers and numbers are read as words.
        assert_eq!(reading(&tokenizer, "When is the tenancy deposit returned?"), 1.0);
        assert_eq!(reading(&tokenizer, "I have a cat"), 1.0);
        assert!(reading(&tokenizer, "asn1_get_length_ber --persistent 9102") > 0.9);
        // Arabic, which its vocabulary has only letters of, is spelled out.
        assert_eq!(reading(&tokenizer, "من هو حمزة بن عبد المطلب"), 0.0);
        // Fifteen letters read, ten spelled out.
        let mixed = reading(&tokenizer, "deposit returned حمزة المطلب");
        assert!((mixed - 0.6).abs() < 1e-6, "{mixed}");
        assert_eq!(reading(&tokenizer, ""), 1.0);
    }

    #[test]
    fn minilm_matches_reference_embeddings_of_an_independent_implementation() {
        check_reference("all-MiniLM-L6-v2", "minilm.json", 384, 256);
    }

    #[test]
    fn mpnet_matches_reference_embeddings_of_an_independent_implementation() {
        check_reference("all-mpnet-base-v2", "mpnet.json", 768, 384);
    }

    /// The int8 ONNX export of all-MiniLM-L6-v2 (ONNX Runtime through
    /// fastembed) against ask's candle model of the f32 weights: close, not
    /// equal, and as close alone as in a padded batch.
    #[test]
    fn onnx_int8_minilm_agrees_with_the_candle_encoder() {
        let onnx_dir = ask_engine::fetched_model("all-MiniLM-L6-v2-int8");
        assert!(onnx_dir.join("model.onnx").exists(), "{} is missing: run scripts/fetch-models --onnx", onnx_dir.display());
        let onnx = Embedder::load(&onnx_dir).unwrap();
        let candle = Embedder::load(&ask_engine::fetched_model("all-MiniLM-L6-v2")).unwrap();
        assert_eq!((onnx.info().backend, candle.info().backend), (Backend::Onnx, Backend::Candle));
        assert_eq!((onnx.info().dim, onnx.info().max_tokens, onnx.info().pooling), (384, 256, Pooling::Mean));
        let long = "The deposit is returned within thirty days of the end of the tenancy. ".repeat(40);
        let texts = [
            "When is the deposit returned?",
            "Bake the loaf in a preheated Dutch oven for twenty minutes with the lid on.",
            "Zoë Müller: Réunion à Zürich, the boiler service is on Friday.",
            long.as_str(),
        ];
        let (a, tokens) = onnx.embed_passages(&texts).unwrap();
        let (b, same_tokens) = candle.embed_passages(&texts).unwrap();
        assert_eq!(tokens, same_tokens, "both truncate alike");
        for ((x, y), text) in a.iter().zip(&b).zip(texts) {
            let cos: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            assert!(cos >= 0.98, "{text:?}: cosine {cos}");
            assert!(cos < 0.99999, "{text:?}: an int8 export should not be bit-equal to f32 ({cos})");
        }
        let alone = onnx.embed_query(texts[0]).unwrap();
        let diff = alone.iter().zip(&a[0]).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "padding changed the vector by {diff}");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ask-model-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

//! Encoders kept as one GGUF file, the way llama.cpp and Ollama keep them:
//! the weights under llama.cpp's tensor names, the WordPiece vocabulary and
//! the architecture's settings in the file's metadata. nomic-bert
//! (nomic-embed-text) runs on candle-transformers' model of it.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::nomic_bert::{self, NomicBertModel};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

use crate::encoder::{Backend, EncoderInfo, Pooling};
use crate::ModelError;

/// The architectures of GGUF encoders ask runs (`general.architecture`).
pub const ARCHITECTURES: [&str; 1] = ["nomic-bert"];

/// The architectures ask runs from a GGUF encoder, said in an error.
const SUPPORTED: &str = "ask runs nomic-bert GGUF encoders (nomic-embed-text); other encoders run from model.safetensors or model.onnx";

/// Whether `path` names a GGUF file (rather than an encoder folder).
pub fn is_gguf(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid { path: path.to_path_buf(), message: message.to_string() }
}

/// The file's metadata and a reader at its tensors.
fn open(path: &Path) -> Result<(Content, BufReader<File>), ModelError> {
    let file = File::open(path).map_err(|e| invalid(path, e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| invalid(path, format!("not a readable GGUF file: {e}")))?;
    Ok((content, reader))
}

fn meta<'a>(ct: &'a Content, path: &Path, key: &str) -> Result<&'a Value, ModelError> {
    ct.metadata.get(key).ok_or_else(|| invalid(path, format!("no {key} in the GGUF metadata")))
}

fn meta_u32(ct: &Content, path: &Path, key: &str) -> Result<u32, ModelError> {
    meta(ct, path, key)?.to_u32().map_err(|e| invalid(path, format!("{key}: {e}")))
}

/// The architecture, refused unless ask runs it.
fn architecture(ct: &Content, path: &Path) -> Result<String, ModelError> {
    let arch = meta(ct, path, "general.architecture")?.to_string().map_err(|e| invalid(path, e))?.clone();
    if !ARCHITECTURES.contains(&arch.as_str()) {
        return Err(ModelError::Unsupported { path: path.to_path_buf(), arch, supported: SUPPORTED });
    }
    Ok(arch)
}

/// What the encoder is, from its metadata. nomic-bert is trained with
/// task prefixes, which ask adds to every query and passage.
pub fn probe(path: &Path) -> Result<EncoderInfo, ModelError> {
    let (ct, _) = open(path)?;
    let arch = architecture(&ct, path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "encoder".into());
    Ok(EncoderInfo {
        name,
        backend: Backend::Candle,
        dim: meta_u32(&ct, path, &format!("{arch}.embedding_length"))? as usize,
        max_tokens: meta_u32(&ct, path, &format!("{arch}.context_length"))? as usize,
        pooling: Pooling::Mean,
        query_prefix: "search_query: ".into(),
        passage_prefix: "search_document: ".into(),
    })
}

/// The WordPiece tokenizer the metadata holds (`tokenizer.ggml.model` =
/// `bert`), as the checkpoint had it: lower-cased, split on whitespace and punctuation, `##` pieces,
/// `[CLS] … [SEP]` around each input.
pub fn tokenizer(path: &Path) -> Result<Tokenizer, ModelError> {
    let (ct, _) = open(path)?;
    let model = meta(&ct, path, "tokenizer.ggml.model")?.to_string().map_err(|e| invalid(path, e))?;
    if model != "bert" {
        return Err(invalid(path, format!("its tokenizer is '{model}', not the WordPiece ('bert') vocabulary an encoder needs")));
    }
    let tokens: Vec<String> = meta(&ct, path, "tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|e| invalid(path, e))?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| invalid(path, e)))
        .collect::<Result<_, _>>()?;
    let token = |key: &str| -> Result<(String, u32), ModelError> {
        let id = meta_u32(&ct, path, key)?;
        let text = tokens.get(id as usize).ok_or_else(|| invalid(path, format!("{key} {id} is past the vocabulary")))?;
        Ok((text.trim_start_matches('\u{2581}').to_owned(), id))
    };
    let (unk, cls, sep) = (token("tokenizer.ggml.unknown_token_id")?, token("tokenizer.ggml.bos_token_id")?, token("tokenizer.ggml.seperator_token_id")?);
    // llama.cpp writes a word's first piece with a "▁" before it and a
    // continuing piece bare (WordPiece's "##piece"); [CLS]-like tokens as
    // they are.
    let piece = |t: &str| match t.strip_prefix('\u{2581}') {
        Some(word) => word.to_owned(),
        None if t.len() > 2 && t.starts_with('[') && t.ends_with(']') => t.to_owned(),
        None => format!("##{t}"),
    };
    let vocab: serde_json::Map<String, serde_json::Value> = tokens.iter().enumerate().map(|(i, t)| (piece(t), i.into())).collect();
    // Built as tokenizer.json describes one (the builder wants the hash
    // map type tokenizers keeps inside).
    let described = serde_json::json!({
        "type": "WordPiece", "vocab": vocab, "unk_token": unk.0, "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
    });
    let wordpiece: WordPiece = serde_json::from_str(&described.to_string())
    .map_err(|e| invalid(path, format!("cannot build its WordPiece tokenizer: {e}")))?;
    let mut tokenizer = Tokenizer::new(wordpiece);
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, true))).map_err(|e| invalid(path, e))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(sep, cls)));
    Ok(tokenizer)
}

/// llama.cpp's names for nomic-bert's tensors, as candle-transformers'
/// model (after the Hugging Face checkpoint) names them.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("embeddings.word_embeddings.weight"),
        "token_types.weight" => Some("embeddings.token_type_embeddings.weight"),
        "token_embd_norm.weight" => Some("emb_ln.weight"),
        "token_embd_norm.bias" => Some("emb_ln.bias"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_owned());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, tensor) = rest.split_once('.')?;
    let (part, kind) = tensor.rsplit_once('.')?;
    let hf = match part {
        "attn_qkv" => "attn.Wqkv",
        "attn_output" => "attn.out_proj",
        "attn_output_norm" => "norm1",
        // up · silu(gate): the checkpoint's fc11 · silu(fc12).
        "ffn_up" => "mlp.fc11",
        "ffn_gate" => "mlp.fc12",
        "ffn_down" => "mlp.fc2",
        "layer_output_norm" => "norm2",
        _ => return None,
    };
    Some(format!("encoder.layers.{layer}.{hf}.{kind}"))
}

/// A nomic-bert GGUF encoder's weights, in f32 on the CPU.
pub fn load(path: &Path) -> Result<NomicBertModel, ModelError> {
    let (ct, mut reader) = open(path)?;
    let arch = architecture(&ct, path)?;
    let device = Device::Cpu;
    let mut tensors = HashMap::new();
    for name in ct.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else {
            return Err(invalid(path, format!("tensor {name} is not one of nomic-bert's")));
        };
        let t = ct.tensor(&mut reader, name, &device).map_err(|e| invalid(path, format!("{name}: {e}")))?;
        tensors.insert(hf, t.dequantize(&device).map_err(|e| invalid(path, format!("{name}: {e}")))?);
    }
    let u = |key: &str| meta_u32(&ct, path, &format!("{arch}.{key}")).map(|v| v as usize);
    let f = |key: &str, default: f64| ct.metadata.get(&format!("{arch}.{key}")).and_then(|v| v.to_f32().ok()).map_or(default, f64::from);
    let config = nomic_bert::Config {
        vocab_size: tensors.get("embeddings.word_embeddings.weight").map_or(0, |t| t.dims()[0]),
        n_embd: u("embedding_length")?,
        n_head: u("attention.head_count")?,
        n_layer: u("block_count")?,
        n_inner: u("feed_forward_length")?,
        n_positions: u("context_length")?,
        type_vocab_size: tensors.get("embeddings.token_type_embeddings.weight").map_or(0, |t| t.dims()[0]),
        layer_norm_epsilon: f("attention.layer_norm_epsilon", 1e-12),
        rotary_emb_base: f("rope.freq_base", 1000.0),
        model_type: None,
        ..Default::default()
    };
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
    NomicBertModel::load(vb, &config).map_err(|e| invalid(path, format!("cannot load nomic-bert weights: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::Tensor;

    /// A GGUF file of `metadata` and one small tensor, in a folder that
    /// goes when the test ends.
    fn written(metadata: &[(&str, Value)]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encoder.gguf");
        let t = QTensor::quantize(&Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
        let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let mut file = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut file, &meta, &[("token_types.weight", &t)]).unwrap();
        (dir, path)
    }

    fn vocab(tokens: &[&str]) -> Value {
        Value::Array(tokens.iter().map(|t| Value::String((*t).into())).collect())
    }

    /// The WordPiece pieces of a llama.cpp-style vocabulary: "▁" marks a
    /// word's first piece, a bare piece continues a word.
    #[test]
    fn the_vocabulary_reads_as_the_checkpoints_wordpiece() {
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u{2581}otter", "s", "\u{2581}backup", "\u{2581}.", "\u{2581}s"];
        let (_dir, path) = written(&[
            ("general.architecture", Value::String("nomic-bert".into())),
            ("tokenizer.ggml.model", Value::String("bert".into())),
            ("tokenizer.ggml.tokens", vocab(&tokens)),
            ("tokenizer.ggml.unknown_token_id", Value::U32(1)),
            ("tokenizer.ggml.bos_token_id", Value::U32(2)),
            ("tokenizer.ggml.seperator_token_id", Value::U32(3)),
        ]);
        let tok = tokenizer(&path).unwrap();
        let ids = tok.encode("Otters backup. S", true).unwrap().get_ids().to_vec();
        // [CLS] otter ##s backup . s [SEP]
        assert_eq!(ids, [2, 4, 5, 6, 7, 8, 3]);
        assert_eq!(tok.encode("kestrel", true).unwrap().get_ids(), [2, 1, 3]);
    }

    #[test]
    fn unusable_files_are_errors_that_name_them() {
        // An architecture ask does not run.
        let (_dir, path) = written(&[("general.architecture", Value::String("t5".into()))]);
        let e = probe(&path).unwrap_err();
        assert!(matches!(&e, ModelError::Unsupported { path: p, arch, .. } if p == &path && arch == "t5"), "{e}");
        // No tokenizer in the metadata.
        let (_dir, path) = written(&[("general.architecture", Value::String("nomic-bert".into()))]);
        let e = tokenizer(&path).unwrap_err();
        assert!(matches!(&e, ModelError::Invalid { path: p, message } if p == &path && message.contains("tokenizer.ggml.model")), "{e}");
        // Cut short.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = probe(&path).and_then(|_| load(&path).map(|_| ())).unwrap_err();
        assert!(matches!(&e, ModelError::Invalid { path: p, .. } if p == &path), "{e}");
    }

    #[test]
    fn llama_cpp_names_map_to_the_checkpoints() {
        assert_eq!(hf_name("blk.11.attn_qkv.weight").as_deref(), Some("encoder.layers.11.attn.Wqkv.weight"));
        assert_eq!(hf_name("blk.0.layer_output_norm.bias").as_deref(), Some("encoder.layers.0.norm2.bias"));
        assert_eq!(hf_name("token_embd.weight").as_deref(), Some("embeddings.word_embeddings.weight"));
        assert_eq!(hf_name("blk.0.attn_k.weight"), None);
        assert_eq!(hf_name("output.weight"), None);
    }
}

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
    info(&ct, path)
}

/// [`probe`] of an opened file.
fn info(ct: &Content, path: &Path) -> Result<EncoderInfo, ModelError> {
    let arch = architecture(ct, path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "encoder".into());
    Ok(EncoderInfo {
        name,
        backend: Backend::Candle,
        dim: meta_u32(ct, path, &format!("{arch}.embedding_length"))? as usize,
        max_tokens: meta_u32(ct, path, &format!("{arch}.context_length"))? as usize,
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
    tokenizer_of(&ct, path)
}

/// [`tokenizer`] of an opened file.
fn tokenizer_of(ct: &Content, path: &Path) -> Result<Tokenizer, ModelError> {
    let model = meta(ct, path, "tokenizer.ggml.model")?.to_string().map_err(|e| invalid(path, e))?;
    if model != "bert" {
        return Err(invalid(path, format!("its tokenizer is '{model}', not the WordPiece ('bert') vocabulary an encoder needs")));
    }
    let tokens: Vec<String> = meta(ct, path, "tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|e| invalid(path, e))?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| invalid(path, e)))
        .collect::<Result<_, _>>()?;
    let token = |key: &str| -> Result<(String, u32), ModelError> {
        let id = meta_u32(ct, path, key)?;
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

/// A nomic-bert GGUF encoder, the file read once: what it is
/// ([`probe`]), its tokenizer ([`tokenizer`]) and its weights, in f32 on
/// the CPU.
pub fn load(path: &Path) -> Result<(EncoderInfo, Tokenizer, NomicBertModel), ModelError> {
    let (ct, mut reader) = open(path)?;
    let info = info(&ct, path)?;
    let tokenizer = tokenizer_of(&ct, path)?;
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
    let model = NomicBertModel::load(vb, &config).map_err(|e| invalid(path, format!("cannot load nomic-bert weights: {e}")))?;
    Ok((info, tokenizer, model))
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

    /// Numbers from a fixed seed, from -0.5 to 0.5.
    fn draws(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// nomic-bert as the checkpoint defines it, written out apart from the
    /// model under test: post-norm layers, rotary positions on the two
    /// halves of each head, up · silu(gate), mean pooling, unit length.
    fn reference(w: &HashMap<&str, (Vec<f32>, usize)>, ids: &[usize], e: usize, heads: usize, layers: usize) -> Vec<f64> {
        let m = |name: &str| &w[name];
        let matvec = |name: &str, x: &[f64]| -> Vec<f64> {
            let (data, cols) = m(name);
            data.chunks(*cols).map(|row| row.iter().zip(x).map(|(a, b)| *a as f64 * b).sum()).collect()
        };
        let norm = |x: &[f64], name: &str| -> Vec<f64> {
            let mean = x.iter().sum::<f64>() / x.len() as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
            let (g, b) = (&m(&format!("{name}.weight")).0, &m(&format!("{name}.bias")).0);
            x.iter().enumerate().map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * g[i] as f64 + b[i] as f64).collect()
        };
        let (tok, types) = (&m("token_embd.weight").0, &m("token_types.weight").0);
        let mut x: Vec<Vec<f64>> = ids.iter().map(|&id| (0..e).map(|j| (tok[id * e + j] + types[j]) as f64).collect()).collect();
        x = x.iter().map(|t| norm(t, "token_embd_norm")).collect();
        let d = e / heads;
        let rotate = |v: &mut [f64], pos: usize| {
            for i in 0..d / 2 {
                let theta = pos as f64 * 1000f64.powf(-2.0 * i as f64 / d as f64);
                let (a, b) = (v[i], v[i + d / 2]);
                v[i] = a * theta.cos() - b * theta.sin();
                v[i + d / 2] = b * theta.cos() + a * theta.sin();
            }
        };
        for l in 0..layers {
            let name = |n: &str| format!("blk.{l}.{n}");
            let qkv: Vec<Vec<f64>> = x.iter().map(|t| matvec(&name("attn_qkv.weight"), t)).collect();
            let mut q: Vec<Vec<f64>> = qkv.iter().map(|r| r[..e].to_vec()).collect();
            let mut k: Vec<Vec<f64>> = qkv.iter().map(|r| r[e..2 * e].to_vec()).collect();
            for (pos, (qr, kr)) in q.iter_mut().zip(k.iter_mut()).enumerate() {
                for h in 0..heads {
                    rotate(&mut qr[h * d..(h + 1) * d], pos);
                    rotate(&mut kr[h * d..(h + 1) * d], pos);
                }
            }
            let mut attended = vec![vec![0.0; e]; x.len()];
            for (t, out) in attended.iter_mut().enumerate() {
                for h in 0..heads {
                    let r = h * d..(h + 1) * d;
                    let scores: Vec<f64> = k.iter().map(|kr| q[t][r.clone()].iter().zip(&kr[r.clone()]).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt()).collect();
                    let top = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let exp: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
                    let sum: f64 = exp.iter().sum();
                    for (u, p) in exp.iter().enumerate() {
                        for j in r.clone() {
                            out[j] += p / sum * qkv[u][2 * e + j];
                        }
                    }
                }
            }
            x = x.iter().zip(&attended).map(|(t, a)| {
                let o = matvec(&name("attn_output.weight"), a);
                norm(&t.iter().zip(&o).map(|(p, q)| p + q).collect::<Vec<_>>(), &name("attn_output_norm"))
            }).collect();
            x = x.iter().map(|t| {
                let (up, gate) = (matvec(&name("ffn_up.weight"), t), matvec(&name("ffn_gate.weight"), t));
                let h: Vec<f64> = up.iter().zip(&gate).map(|(u, g)| u * g / (1.0 + (-g).exp())).collect();
                let down = matvec(&name("ffn_down.weight"), &h);
                norm(&t.iter().zip(&down).map(|(p, q)| p + q).collect::<Vec<_>>(), &name("layer_output_norm"))
            }).collect();
        }
        let mean: Vec<f64> = (0..e).map(|j| x.iter().map(|t| t[j]).sum::<f64>() / x.len() as f64).collect();
        let len = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        mean.iter().map(|v| v / len).collect()
    }

    /// A small nomic-bert of random weights, written as llama.cpp writes
    /// one, embeds as the reference does.
    #[test]
    fn a_small_gguf_encoder_embeds_as_nomic_bert_is_defined() {
        let (e, heads, layers, ffn, vocab_size) = (16, 2, 2, 24, 9);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("token_embd.weight".into(), vec![vocab_size, e]),
            ("token_types.weight".into(), vec![2, e]),
            ("token_embd_norm.weight".into(), vec![e]),
            ("token_embd_norm.bias".into(), vec![e]),
        ];
        for l in 0..layers {
            for (n, s) in [
                ("attn_qkv.weight", vec![3 * e, e]),
                ("attn_output.weight", vec![e, e]),
                ("attn_output_norm.weight", vec![e]),
                ("attn_output_norm.bias", vec![e]),
                ("ffn_up.weight", vec![ffn, e]),
                ("ffn_gate.weight", vec![ffn, e]),
                ("ffn_down.weight", vec![e, ffn]),
                ("layer_output_norm.weight", vec![e]),
                ("layer_output_norm.bias", vec![e]),
            ] {
                shapes.push((format!("blk.{l}.{n}"), s));
            }
        }
        let mut seed = 7;
        let mut weights = HashMap::new();
        let mut tensors = Vec::new();
        for (name, shape) in &shapes {
            let n: usize = shape.iter().product();
            // Norms near 1, so that each layer passes its input on.
            let values: Vec<f32> = draws(&mut seed, n).into_iter().map(|v| if shape.len() == 1 && name.ends_with("weight") { 1.0 + v } else { v }).collect();
            let t = Tensor::from_vec(values.clone(), shape.as_slice(), &Device::Cpu).unwrap();
            tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
            weights.insert(name.as_str(), (values, *shape.last().unwrap()));
        }
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u{2581}otter", "s", "\u{2581}backup", "\u{2581}.", "\u{2581}tool"];
        let metadata = [
            ("general.architecture", Value::String("nomic-bert".into())),
            ("nomic-bert.block_count", Value::U32(layers as u32)),
            ("nomic-bert.context_length", Value::U32(64)),
            ("nomic-bert.embedding_length", Value::U32(e as u32)),
            ("nomic-bert.feed_forward_length", Value::U32(ffn as u32)),
            ("nomic-bert.attention.head_count", Value::U32(heads as u32)),
            ("nomic-bert.attention.layer_norm_epsilon", Value::F32(1e-12)),
            ("nomic-bert.rope.freq_base", Value::F32(1000.0)),
            ("tokenizer.ggml.model", Value::String("bert".into())),
            ("tokenizer.ggml.tokens", vocab(&tokens)),
            ("tokenizer.ggml.unknown_token_id", Value::U32(1)),
            ("tokenizer.ggml.bos_token_id", Value::U32(2)),
            ("tokenizer.ggml.seperator_token_id", Value::U32(3)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny-nomic.f32.gguf");
        let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &meta, &ts).unwrap();

        let embedder = crate::Embedder::load(&path).unwrap();
        assert_eq!((embedder.info().dim, embedder.info().query_prefix.as_str()), (e, "search_query: "));
        // [CLS] otter ##s backup tool . [SEP], and a shorter input padded beside it.
        let inputs = [vec![2u32, 4, 5, 6, 8, 7, 3], vec![2, 6, 3]];
        let got = embedder.embed_token_ids(&inputs).unwrap();
        for (ids, v) in inputs.iter().zip(&got) {
            let want = reference(&weights, &ids.iter().map(|&i| i as usize).collect::<Vec<_>>(), e, heads, layers);
            let cos: f64 = want.iter().zip(v).map(|(a, b)| a * *b as f64).sum();
            assert!(cos > 0.9999, "cosine {cos} for {ids:?}");
        }
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

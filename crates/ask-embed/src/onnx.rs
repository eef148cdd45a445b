//! Encoders exported to ONNX (`model.onnx`), run by ONNX Runtime through
//! fastembed.
//!
//! ONNX Runtime is a shared library loaded at run time (ort's
//! `load-dynamic`): nothing is downloaded when ask is built, and a machine
//! without the library still runs every candle encoder. ask looks for
//! `libonnxruntime.so*` where `scripts/fetch-models --onnx` puts it (a
//! `lib/` folder in or beside the encoder's folder), then `ORT_DYLIB_PATH`.
//!
//! fastembed reads the tokenizer and its settings from bytes; the two
//! files a sentence-transformers export may lack (`tokenizer_config.json`,
//! `special_tokens_map.json`) are made up from what the folder does say,
//! so that ONNX and candle truncate and pad alike.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fastembed::{InitOptionsUserDefined, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};

use crate::encoder::{EncoderInfo, Pooling};
use crate::ModelError;

/// The ONNX graph of an encoder folder: `model.onnx`, or `onnx/model.onnx`
/// as Hugging Face repositories lay it out.
pub(crate) fn graph(dir: &Path) -> Option<PathBuf> {
    [dir.join("model.onnx"), dir.join("onnx/model.onnx")].into_iter().find(|p| p.is_file())
}

/// Where ONNX Runtime's library is for the encoder in `dir`: a `lib/`
/// folder in the encoder's folder or in the folder holding it (the models
/// directory), else `ORT_DYLIB_PATH`. `None` when none is found.
pub fn runtime_library(dir: &Path) -> Option<PathBuf> {
    let dirs = [Some(dir.join("lib")), dir.parent().map(|p| p.join("lib"))];
    let found = dirs.into_iter().flatten().find_map(|lib| {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&lib)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
            .collect();
        // The newest version when several are there (names sort by version
        // within one major version).
        names.sort();
        names.pop()
    });
    found.or_else(|| std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()).map(PathBuf::from))
}

/// Loads ONNX Runtime once per process.
fn load_runtime(dir: &Path) -> Result<(), ModelError> {
    static LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if loaded.is_some() {
        return Ok(());
    }
    let missing = "not found (ONNX Runtime's library, which encoders in model.onnx need)";
    let Some(lib) = runtime_library(dir) else {
        let expected = dir.parent().unwrap_or(dir).join("lib/libonnxruntime.so");
        return Err(ModelError::Runtime { path: expected, message: missing.into() });
    };
    if !lib.is_file() {
        return Err(ModelError::Runtime { path: lib, message: missing.into() });
    }
    // Telemetry off: ort turns it on unless told otherwise, and Microsoft's
    // builds (the onnxruntime wheel's) honour it.
    ort::init_from(&lib)
        .map_err(|e| ModelError::Runtime { path: lib.clone(), message: format!("cannot load ONNX Runtime: {e}") })?
        .with_telemetry(false)
        .commit();
    *loaded = Some(lib);
    Ok(())
}

/// An ONNX encoder session.
pub(crate) struct Session {
    /// fastembed's `embed` takes `&mut self`; ask's encoder is shared.
    model: Mutex<TextEmbedding>,
}

impl Session {
    /// Loads `graph` with the tokenizer files of `dir`, pooling and
    /// truncating as `info` says, on `threads` threads.
    pub(crate) fn load(dir: &Path, graph: &Path, info: &EncoderInfo, threads: usize) -> Result<Session, ModelError> {
        load_runtime(dir)?;
        let read = |path: PathBuf, what: &'static str| {
            std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ModelError::Missing { path: path.clone(), what },
                _ => ModelError::Invalid { path: path.clone(), message: e.to_string() },
            })
        };
        let onnx = read(graph.to_path_buf(), "encoder weights")?;
        let tokenizer_file = read(dir.join("tokenizer.json"), "encoder tokenizer")?;
        let config_file = read(dir.join("config.json"), "encoder config")?;
        let files = TokenizerFiles {
            tokenizer_config_file: tokenizer_config(dir, &tokenizer_file, &config_file, info.max_tokens)?,
            special_tokens_map_file: std::fs::read(dir.join("special_tokens_map.json")).unwrap_or_else(|_| b"{}".to_vec()),
            tokenizer_file,
            config_file,
        };
        let pooling = match info.pooling {
            Pooling::Mean => fastembed::Pooling::Mean,
            Pooling::Cls => fastembed::Pooling::Cls,
        };
        let model = UserDefinedEmbeddingModel::new(onnx, files).with_pooling(pooling);
        let options = InitOptionsUserDefined::new().with_max_length(info.max_tokens).with_intra_threads(threads.max(1));
        let model = TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| ModelError::Invalid { path: graph.to_path_buf(), message: format!("{e:#}") })?;
        Ok(Session { model: Mutex::new(model) })
    }

    /// Unit-length vectors of `texts`, in order, computed in one batch.
    pub(crate) fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        model.embed(texts, Some(texts.len().max(1))).map_err(|e| ModelError::Tensor(e.into()))
    }
}

/// `tokenizer_config.json` as fastembed reads it: the folder's own, with
/// `model_max_length` held to what ask truncates at; or, for an export that
/// has none, one made from the padding token `config.json` names.
fn tokenizer_config(dir: &Path, tokenizer: &[u8], config: &[u8], max_tokens: usize) -> Result<Vec<u8>, ModelError> {
    let path = dir.join("tokenizer_config.json");
    let mut value: serde_json::Value = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ModelError::Invalid { path: path.clone(), message: format!("invalid tokenizer config: {e}") })?,
        Err(_) => serde_json::json!({}),
    };
    let object = value.as_object_mut().ok_or_else(|| ModelError::Invalid { path: path.clone(), message: "not a JSON object".into() })?;
    object.insert("model_max_length".into(), max_tokens.into());
    if !object.get("pad_token").is_some_and(|t| t.is_string()) {
        let pad_id = serde_json::from_slice::<serde_json::Value>(config).ok().and_then(|c| c["pad_token_id"].as_u64()).unwrap_or(0);
        let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer)
            .map_err(|e| ModelError::Invalid { path: dir.join("tokenizer.json"), message: e.to_string() })?;
        let token = tokenizer.id_to_token(pad_id as u32).unwrap_or_else(|| "[PAD]".into());
        object.insert("pad_token".into(), token.into());
    }
    Ok(serde_json::to_vec(&value).expect("JSON serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_is_found_in_a_lib_folder_beside_the_encoder() {
        let root = std::env::temp_dir().join(format!("ask-onnx-lib-{}", std::process::id()));
        let encoder = root.join("models/minilm-int8");
        std::fs::create_dir_all(&encoder).unwrap();
        std::fs::create_dir_all(root.join("models/lib")).unwrap();
        for name in ["libonnxruntime.so.1.24.1", "libonnxruntime.so.1.32.0", "libother.so"] {
            std::fs::write(root.join("models/lib").join(name), b"").unwrap();
        }
        assert_eq!(runtime_library(&encoder), Some(root.join("models/lib/libonnxruntime.so.1.32.0")));
        // One in the encoder's own folder comes first.
        std::fs::create_dir_all(encoder.join("lib")).unwrap();
        std::fs::write(encoder.join("lib/libonnxruntime.so"), b"").unwrap();
        assert_eq!(runtime_library(&encoder), Some(encoder.join("lib/libonnxruntime.so")));
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_missing_tokenizer_config_is_made_from_the_padding_token() {
        let dir = std::env::temp_dir().join(format!("ask-onnx-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokenizer = std::fs::read(ask_engine::fetched_model("all-MiniLM-L6-v2").join("tokenizer.json")).unwrap();
        let made = tokenizer_config(&dir, &tokenizer, br#"{"pad_token_id": 0}"#, 256).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&made).unwrap();
        assert_eq!((v["model_max_length"].as_u64(), v["pad_token"].as_str()), (Some(256), Some("[PAD]")));
        // A folder's own config keeps its fields; the length is ask's.
        std::fs::write(dir.join("tokenizer_config.json"), r#"{"pad_token": "<pad>", "model_max_length": 512, "do_lower_case": true}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&tokenizer_config(&dir, &tokenizer, b"{}", 384).unwrap()).unwrap();
        assert_eq!((v["model_max_length"].as_u64(), v["pad_token"].as_str(), v["do_lower_case"].as_bool()), (Some(384), Some("<pad>"), Some(true)));
        std::fs::remove_dir_all(dir).ok();
    }
}

//! Each store's layout, built in a temporary folder from tiny GGUF files
//! (a header and no tensors; `tests/models.rs` runs real models through
//! the same layouts).

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};

use super::*;

/// A GGUF header of `architecture` and llama.cpp file type `file_type`.
fn gguf(path: &Path, architecture: &str, file_type: u32) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let arch = Value::String(architecture.into());
    let ft = Value::U32(file_type);
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &[("general.architecture", &arch), ("general.file_type", &ft)], &[]).unwrap();
    path.to_path_buf()
}

fn ollama_manifest(root: &Path, host: &str, ns: &str, model: &str, tag: &str, hex: &str) {
    let dir = root.join("manifests").join(host).join(ns).join(model);
    std::fs::create_dir_all(&dir).unwrap();
    // The layout of Ollama's manifests: an OCI image manifest whose layers
    // carry Ollama's media types.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:0000", "size": 485},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:1111", "size": 182},
            {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{hex}"), "size": 1000},
            {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:2222", "size": 11343}
        ]
    });
    std::fs::write(dir.join(tag), serde_json::to_vec(&manifest).unwrap()).unwrap();
}

fn stores(root: &Path) -> Stores {
    Stores {
        ask: root.join("ask"),
        ollama: vec![root.join("ollama")],
        hf_hub: Some(root.join("hub")),
        lmstudio: vec![root.join("lmstudio")],
        llama_cpp: Some(root.join("llama.cpp")),
    }
}

/// One model in each store, and files that are not models ask can run.
fn layout(root: &Path) -> Stores {
    let s = stores(root);
    gguf(&s.ask.join("SmolLM2-135M-Instruct.Q4_1.gguf"), "llama", 3);
    gguf(&s.ask.join("mine.gguf"), "qwen2", 7);
    let ollama = root.join("ollama");
    gguf(&ollama.join("blobs/sha256-abc123"), "qwen2", 15);
    ollama_manifest(&ollama, "registry.ollama.ai", "library", "qwen2.5", "1.5b", "abc123");
    gguf(&ollama.join("blobs/sha256-def456"), "llama", 2);
    ollama_manifest(&ollama, "registry.ollama.ai", "library", "smollm2", "latest", "def456");
    gguf(&ollama.join("blobs/sha256-bee789"), "bert", 1);
    ollama_manifest(&ollama, "registry.ollama.ai", "library", "nomic-embed-text", "latest", "bee789");
    // The hub cache: snapshots link to blobs.
    let repo = root.join("hub/models--Qwen--Qwen2.5-1.5B-Instruct-GGUF");
    let q4 = gguf(&repo.join("blobs/aaa"), "qwen2", 15);
    let q8 = gguf(&repo.join("blobs/bbb"), "qwen2", 7);
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink(&q4, snap.join("qwen2.5-1.5b-instruct-q4_k_m.gguf")).unwrap();
    std::os::unix::fs::symlink(&q8, snap.join("qwen2.5-1.5b-instruct-q8_0.gguf")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    gguf(&root.join("lmstudio/bartowski/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q8_0.gguf"), "gemma3", 7);
    gguf(&root.join("llama.cpp/phi-3-mini-Q4_0.gguf"), "phi3", 2);
    gguf(&root.join("llama.cpp/big-00002-of-00003.gguf"), "llama", 2);
    std::fs::write(root.join("llama.cpp/broken.gguf"), b"not a model").unwrap();
    s
}

#[test]
fn every_store_is_listed_with_what_its_headers_say() {
    let dir = tempfile::tempdir().unwrap();
    let scan = layout(dir.path()).scan();
    let answer: Vec<(Origin, &str, &str, Option<&str>)> = scan
        .found
        .iter()
        .filter(|f| f.role == Role::Answer)
        .map(|f| (f.source, f.name.as_str(), f.architecture.as_str(), f.quantization.as_deref()))
        .collect();
    assert_eq!(
        answer,
        [
            (Origin::Ask, "mine", "qwen2", Some("Q8_0")),
            (Origin::Ask, "smollm2", "llama", Some("Q4_1")),
            (Origin::Ollama, "qwen2.5:1.5b", "qwen2", Some("Q4_K_M")),
            (Origin::Ollama, "smollm2:latest", "llama", Some("Q4_0")),
            (Origin::HuggingFace, "Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf", "qwen2", Some("Q4_K_M")),
            (Origin::HuggingFace, "Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q8_0.gguf", "qwen2", Some("Q8_0")),
            (Origin::LmStudio, "bartowski/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q8_0.gguf", "gemma3", Some("Q8_0")),
            (Origin::LlamaCpp, "phi-3-mini-Q4_0.gguf", "phi3", Some("Q4_0")),
        ]
    );
    let why = |needle: &str| scan.skipped.iter().find(|s| s.path.to_string_lossy().contains(needle)).map(|s| s.why.clone()).unwrap_or_default();
    assert!(why("sha256-bee789").contains("architecture 'bert' is not one ask runs"), "{:?}", scan.skipped);
    assert!(why("big-00002-of-00003").contains("split GGUF"), "{:?}", scan.skipped);
    assert!(why("broken.gguf").contains("no GGUF magic"), "{:?}", scan.skipped);
}

#[test]
fn names_of_every_store_resolve_to_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = layout(root);
    let r = |spec: &str| s.resolve(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    assert_eq!(r("smollm2"), root.join("ask/SmolLM2-135M-Instruct.Q4_1.gguf"), "ask's short name first");
    assert_eq!(r("mine"), root.join("ask/mine.gguf"));
    assert_eq!(r("qwen2.5:1.5b"), root.join("ollama/blobs/sha256-abc123"));
    assert_eq!(r("smollm2:latest"), root.join("ollama/blobs/sha256-def456"));
    let snap = root.join("hub/models--Qwen--Qwen2.5-1.5B-Instruct-GGUF/snapshots/0123abcd");
    assert_eq!(r("Qwen/Qwen2.5-1.5B-Instruct-GGUF"), snap.join("qwen2.5-1.5b-instruct-q4_k_m.gguf"), "Q4_K_M of several");
    assert_eq!(r("qwen/qwen2.5-1.5b-instruct-gguf:Q8_0"), snap.join("qwen2.5-1.5b-instruct-q8_0.gguf"));
    assert_eq!(r("Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q8_0.gguf"), snap.join("qwen2.5-1.5b-instruct-q8_0.gguf"));
    assert_eq!(r("bartowski/gemma-3-270m-it-GGUF"), root.join("lmstudio/bartowski/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q8_0.gguf"));
    assert_eq!(r("phi-3-mini-Q4_0"), root.join("llama.cpp/phi-3-mini-Q4_0.gguf"));
    // A path is taken as it is, even when it does not exist (loading says so).
    assert_eq!(r("x/y.gguf"), PathBuf::from("x/y.gguf"));
    assert_eq!(r("/nowhere/m.gguf"), PathBuf::from("/nowhere/m.gguf"));
}

#[test]
fn a_name_of_several_models_is_an_error_listing_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = layout(root);
    // The same file name in two stores, different files.
    gguf(&root.join("lmstudio/someone/phi-GGUF/phi-3-mini-Q4_0.gguf"), "phi3", 2);
    let err = s.resolve("phi-3-mini-Q4_0.gguf").unwrap_err().to_string();
    assert!(err.contains("names 2 models"), "{err}");
    assert!(err.contains("llama.cpp") && err.contains("lmstudio") && err.contains("someone/phi-GGUF/phi-3-mini-Q4_0.gguf"), "{err}");
}

#[test]
fn what_ask_cannot_run_or_cannot_find_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let s = layout(dir.path());
    let err = s.resolve("nomic-embed-text").unwrap_err().to_string();
    assert!(err.contains("sha256-bee789") && err.contains("architecture 'bert'"), "{err}");
    let err = s.resolve("llama9").unwrap_err().to_string();
    assert!(err.contains("llama9") && err.contains("qwen2.5:1.5b") && err.contains("smollm2"), "{err}");
    // A short name whose file was not fetched names the file it looked for.
    let err = s.resolve("qwen2.5-coder-1.5b").unwrap_err();
    assert!(matches!(&err, ModelError::Missing { path, .. } if path.ends_with("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")), "{err}");
    // Nothing anywhere.
    let empty = tempfile::tempdir().unwrap();
    let err = stores(empty.path()).resolve("llama9").unwrap_err();
    assert!(matches!(&err, ModelError::UnknownModel { known, .. } if known.is_empty()), "{err}");
    assert!(err.to_string().contains("none in"), "{err}");
}

#[test]
fn the_stores_follow_each_tools_environment_variables() {
    let vars = |set: &'static [(&'static str, &'static str)]| move |name: &str| set.iter().find(|(k, _)| *k == name).map(|(_, v)| PathBuf::from(v));
    let s = Stores::from_vars(Path::new("/m"), vars(&[("HOME", "/h")]));
    assert_eq!(s.ollama, [PathBuf::from("/h/.ollama/models"), PathBuf::from("/usr/share/ollama/.ollama/models")]);
    assert_eq!(s.hf_hub, Some(PathBuf::from("/h/.cache/huggingface/hub")));
    assert_eq!(s.lmstudio, [PathBuf::from("/h/.lmstudio/models"), PathBuf::from("/h/.cache/lm-studio/models")]);
    assert_eq!(s.llama_cpp, Some(PathBuf::from("/h/.cache/llama.cpp")));
    let s = Stores::from_vars(Path::new("/m"), vars(&[("HOME", "/h"), ("OLLAMA_MODELS", "/o"), ("HF_HOME", "/hf"), ("LLAMA_CACHE", "/l")]));
    assert_eq!((s.ollama, s.hf_hub, s.llama_cpp), (vec![PathBuf::from("/o")], Some(PathBuf::from("/hf/hub")), Some(PathBuf::from("/l"))));
    let s = Stores::from_vars(Path::new("/m"), vars(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/cache")]));
    assert_eq!(s.hf_hub, Some(PathBuf::from("/cache")), "HF_HUB_CACHE before HF_HOME");
}

#[test]
fn split_parts_are_told_from_ordinary_names() {
    assert!(split_part(Path::new("/x/Qwen-7B-Q4_K_M-00001-of-00002.gguf")));
    assert!(!split_part(Path::new("/x/qwen2.5-1.5b-instruct-q4_k_m.gguf")));
    assert!(!split_part(Path::new("/x/model-of-00002.gguf")));
}

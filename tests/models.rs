//! Models already on disk in other tools' stores, found and run in place:
//! each store's layout is built in a sandboxed HOME from the real fetched
//! SmolLM2 GGUF (links, not copies), as each tool lays its files out.

use std::path::{Path, PathBuf};

use crate::util::*;

/// An Env whose HOME is inside the sandbox, so only the stores built here
/// are seen.
fn sandbox() -> (Env, PathBuf) {
    let env = Env::new();
    let home = env.path("home");
    std::fs::create_dir_all(&home).unwrap();
    (env, home)
}

fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    // A hard link where the file system allows (Ollama's blobs are plain
    // files), else a symbolic one.
    if std::fs::hard_link(target, at).is_err() {
        std::os::unix::fs::symlink(target, at).unwrap();
    }
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum (coreutils)");
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// SmolLM2 in the stores of Ollama, the Hugging Face hub cache, LM Studio
/// and llama.cpp under `home`.
fn stores(home: &Path) {
    let smol = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let hex = sha256(&smol);
    // Ollama: manifests/HOST/NAMESPACE/MODEL/TAG names the blob by digest.
    let ollama = home.join(".ollama/models");
    link(&smol, &ollama.join(format!("blobs/sha256-{hex}")));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:e0a42594d802e5d31cdc786deb4823edb8adff66094d49de8fffe976d753e348", "size": 485},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{hex}"), "size": std::fs::metadata(&smol).unwrap().len()},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:62fbfd9ed093d6e5ac83190c86eec5369317919f4b149598d2dbb38900e9faef", "size": 182}
        ]
    });
    let dir = ollama.join("manifests/registry.ollama.ai/library/tinyllm");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("135m"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    // The hub cache: a snapshot's file is a link to a blob; refs/main names the snapshot.
    let repo = home.join(".cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF");
    link(&smol, &repo.join(format!("blobs/{hex}")));
    let snapshot = repo.join("snapshots/9c1e0f2d5a");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{hex}"), snapshot.join("smollm2-135m-instruct-q4_1.gguf")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "9c1e0f2d5a").unwrap();
    // LM Studio: PUBLISHER/MODEL/FILE.gguf.
    link(&smol, &home.join(".lmstudio/models/lmstudio-community/SmolLM2-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"));
    // llama.cpp's cache: files by name.
    link(&smol, &home.join(".cache/llama.cpp/tiny-smol.gguf"));
    // Not a model: passed over, and -v says why.
    std::fs::write(home.join(".cache/llama.cpp/notes.gguf"), b"not a model").unwrap();
}

#[test]
fn models_of_other_tools_are_listed_and_answer_in_place() {
    let (env, home) = sandbox();
    stores(&home);
    env.copy_docs();
    env.index(&["docs"]);

    let out = env.cmd().env("HOME", &home).args(["models", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let found = json_lines(&out.stdout);
    let answer: Vec<(String, String)> = found
        .iter()
        .filter(|f| f["role"] == "answer")
        .map(|f| (f["source"].as_str().unwrap().to_owned(), f["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        answer,
        [
            ("ollama".to_owned(), "tinyllm:135m".to_owned()),
            ("huggingface".to_owned(), "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf".to_owned()),
            ("lmstudio".to_owned(), "lmstudio-community/SmolLM2-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf".to_owned()),
            ("llama.cpp".to_owned(), "tiny-smol.gguf".to_owned()),
        ]
    );
    for f in found.iter().filter(|f| f["role"] == "answer") {
        assert_eq!((f["architecture"].as_str(), f["quantization"].as_str()), (Some("llama"), Some("Q4_1")), "{f}");
    }
    let out = env.cmd().env("HOME", &home).args(["models", "-v"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.starts_with("NAME") && text.contains("tinyllm:135m") && text.contains("ollama"), "{text}");
    assert!(stderr(&out).contains("notes.gguf: not a GGUF file"), "{}", stderr(&out));

    // Each name answers, from the file where the tool keeps it.
    for name in ["tinyllm:135m", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1", "lmstudio-community/SmolLM2-GGUF", "tiny-smol"] {
        let out = env
            .cmd()
            .env("HOME", &home)
            .env_remove("ASK_MODEL")
            .args(["query", "--json", "--max-tokens", "8", "-k", "1", "--model", name, "when is the deposit returned"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let v = json(&out.stdout);
        assert!(!v["answer"].as_str().unwrap().is_empty(), "{name}: {v}");
    }
}

#[test]
fn a_name_two_stores_hold_is_an_error_listing_both() {
    let (env, home) = sandbox();
    stores(&home);
    let smol = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    // The same file name in LM Studio's folder as in llama.cpp's cache,
    // another file.
    std::fs::create_dir_all(home.join(".lmstudio/models/someone/tiny-GGUF")).unwrap();
    std::fs::copy(&smol, home.join(".lmstudio/models/someone/tiny-GGUF/tiny-smol.gguf")).unwrap();
    env.write("note.txt", "The boiler is serviced on Friday.\n");
    let out = env.cmd().env("HOME", &home).args(["summarize", "--model", "tiny-smol.gguf", "note.txt"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("names 2 models") && err.contains("someone/tiny-GGUF/tiny-smol.gguf") && err.contains("llama.cpp"), "{err}");
}

#[test]
fn an_encoder_is_named_by_its_folder_in_the_models_directory() {
    let env = Env::new();
    env.copy_docs();
    std::fs::create_dir_all(&env.home).unwrap();
    std::os::unix::fs::symlink(models_dir(), env.home.join("models")).unwrap();
    let out = env.cmd().env_remove("ASK_EMBED_MODEL").args(["--embed-model", "all-MiniLM-L6-v2-int8", "index", "--json", "docs"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status = json(&env.cmd().env_remove("ASK_EMBED_MODEL").args(["--embed-model", "all-MiniLM-L6-v2-int8", "status", "--json"]).output().unwrap().stdout);
    assert_eq!((status["encoder"].as_str(), status["backend"].as_str()), (Some("all-MiniLM-L6-v2-int8"), Some("onnx")));
    // Named no more, the index's own encoder is used, not the default.
    let out = env.cmd().env_remove("ASK_EMBED_MODEL").args(["search", "--json", "-k", "1", "when is the deposit returned"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(file_name(&json_lines(&out.stdout)[0]), "tenancy-notes.md");
    // `ask models` lists it under that name, with its backend.
    let found = json_lines(&env.cmd().env("HOME", env.path("home")).args(["models", "--json"]).output().unwrap().stdout);
    let int8 = found.iter().find(|f| f["name"] == "all-MiniLM-L6-v2-int8").expect("listed");
    assert_eq!((int8["role"].as_str(), int8["backend"].as_str(), int8["architecture"].as_str()), (Some("encoder"), Some("onnx"), Some("bert")));
    assert!(int8["quantization"].is_null(), "an encoder's backend is not a quantization: {int8}");
}

/// The default encoder, chosen by measurement (docs/design.md, Encoders): the int8
/// ONNX MiniLM where it was fetched, else the f32 one on candle.
#[test]
fn the_default_encoder_is_the_int8_one_else_the_f32_one() {
    let cases: [(&[&str], &str, &str); 2] = [
        (&["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8", "lib"], "all-MiniLM-L6-v2-int8", "onnx"),
        (&["all-MiniLM-L6-v2"], "all-MiniLM-L6-v2", "candle"),
    ];
    for (present, encoder, backend) in cases {
        let env = Env::new();
        env.copy_docs();
        let models = env.home.join("models");
        std::fs::create_dir_all(&models).unwrap();
        for name in present {
            std::os::unix::fs::symlink(models_dir().join(name), models.join(name)).unwrap();
        }
        let out = env.cmd().env_remove("ASK_EMBED_MODEL").args(["index", "--json", "docs"]).output().unwrap();
        assert!(out.status.success(), "{present:?}: {}", stderr(&out));
        let status = json(&env.cmd().env_remove("ASK_EMBED_MODEL").args(["status", "--json"]).output().unwrap().stdout);
        assert_eq!((status["encoder"].as_str(), status["backend"].as_str()), (Some(encoder), Some(backend)), "{present:?}");
    }
}

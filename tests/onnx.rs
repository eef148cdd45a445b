//! Encoders exported to ONNX (`model.onnx`), run by ONNX Runtime through
//! fastembed: all-MiniLM-L6-v2 as int8, placed by `scripts/fetch-models
//! --onnx` with ONNX Runtime's library in `models/lib/`.

use std::path::PathBuf;

use crate::offline::{ask_unshared, socket_calls};
use crate::util::*;

fn int8_encoder() -> PathBuf {
    let dir = models_dir().join("all-MiniLM-L6-v2-int8");
    assert!(dir.join("model.onnx").exists(), "{} is missing: run scripts/fetch-models --onnx", dir.display());
    dir
}

fn onnx_env() -> Env {
    let mut env = Env::new();
    env.encoder = int8_encoder();
    env
}

#[test]
fn the_onnx_encoder_indexes_and_searches_and_the_index_says_so() {
    let env = onnx_env();
    env.copy_docs();
    let v = env.index(&["docs"]);
    assert_eq!(v["new"], 5, "{v}");
    let hits = env.search("when is the deposit returned", 1);
    assert_eq!(file_name(&hits[0]), "tenancy-notes.md");
    let hits = env.search("how long does the bread bake", 1);
    assert_eq!(file_name(&hits[0]), "sourdough.txt");
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!((status["encoder"].as_str(), status["backend"].as_str(), status["dim"].as_u64()), (Some("all-MiniLM-L6-v2-int8"), Some("onnx"), Some(384)));

    // Its vectors are not the f32 model's: the index refuses the other one.
    let out = env.cmd().env("ASK_EMBED_MODEL", models_dir().join("all-MiniLM-L6-v2")).args(["search", "deposit"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("built with encoder all-MiniLM-L6-v2-int8 (onnx, 384 dims), not all-MiniLM-L6-v2 (candle, 384 dims)"), "{}", stderr(&out));
}

#[test]
fn the_onnx_encoder_works_without_a_network_and_opens_no_socket() {
    let env = onnx_env();
    env.copy_docs();
    let out = ask_unshared(&env, &["index", "--json", "docs"]);
    assert!(out.status.success(), "unshare -n ask index: {}", stderr(&out));
    assert_eq!(json(&out.stdout)["new"], 5);
    let out = ask_unshared(&env, &["search", "--json", "-k", "1", "deposit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(file_name(&json_lines(&out.stdout)[0]), "tenancy-notes.md");
    let calls = socket_calls(&env, &["search", "deposit"]);
    assert!(!calls.iter().any(|l| l.contains("AF_INET")), "network sockets opened:\n{}", calls.join("\n"));
    assert!(calls.iter().any(|l| l.contains("+++ exited with 0 +++")), "{calls:?}");
}

/// The encoder folder without ONNX Runtime beside it, in a sandbox.
fn encoder_without_runtime(env: &Env) -> PathBuf {
    let dir = env.path("models/minilm-int8");
    copy_dir(&int8_encoder(), &dir);
    dir
}

#[test]
fn a_missing_or_unloadable_runtime_is_a_clear_error() {
    let mut env = Env::new();
    env.copy_docs();
    env.encoder = encoder_without_runtime(&env);
    let out = env.cmd().env_remove("ORT_DYLIB_PATH").args(["index", "docs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let expected = env.path("models/lib/libonnxruntime.so");
    assert!(err.contains(&format!("{}: not found", expected.display())), "{err}");
    assert!(err.contains("scripts/fetch-models --onnx") && err.contains("ORT_DYLIB_PATH"), "{err}");

    // A file that is not the library (or one too old) names the file.
    let bogus = env.write("models/lib/libonnxruntime.so.1.99.0", b"not a shared library");
    let out = env.cmd().env_remove("ORT_DYLIB_PATH").args(["index", "docs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}: cannot load ONNX Runtime", bogus.display())), "{err}");
    assert!(err.contains("scripts/fetch-models --onnx"), "{err}");

    // ORT_DYLIB_PATH points at the real library when none is beside the
    // encoder; the failed runs recorded no file as indexed.
    std::fs::remove_file(bogus).unwrap();
    let lib = std::fs::read_dir(models_dir().join("lib")).unwrap().flatten().map(|e| e.path()).find(|p| p.to_string_lossy().contains("libonnxruntime.so")).unwrap();
    let out = env.cmd().env("ORT_DYLIB_PATH", &lib).args(["index", "--json", "docs"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out.stdout)["new"], 5);
}

use crate::util::*;

fn indexed() -> Env {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    env
}

#[test]
fn answers_with_sources_that_hold_the_evidence() {
    let env = indexed();
    let out = env.ok(&["query", "--max-tokens", "32", "-k", "2", "How much money was approved for drip irrigation?"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let (answer, sources) = text.split_once("\n\nSources:\n").unwrap_or_else(|| panic!("no sources: {text}"));
    assert!(!answer.trim().is_empty(), "{text}");
    let first = sources.lines().next().unwrap();
    assert!(first.starts_with("[1] ") && first.contains("garden-report.pdf (page 2"), "{text}");
}

#[test]
fn json_has_answer_sources_model_and_timings() {
    let env = indexed();
    let out = env.ok(&["query", "--json", "--max-tokens", "16", "-k", "2", "when will the security deposit be returned"]);
    let v = json(&out.stdout);
    assert!(!v["answer"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    let src = &v["sources"][0];
    assert_eq!(src["n"], 1);
    assert!(src["path"].as_str().unwrap().ends_with("tenancy-notes.md"), "{v}");
    assert!(src["text"].as_str().unwrap().contains("1,200 euros"), "{v}");
    for key in ["retrieval_ms", "prompt_tokens", "prefill_tokens_per_s", "decode_tokens_per_s"] {
        assert!(v["timings"][key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
}

#[test]
fn question_from_stdin_and_context_only() {
    let env = indexed();
    let out = env.run_with_stdin(&["query", "--context-only", "-k", "1"], b"how long does the bread bake\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Context:\n\n[1] ") && text.contains("sourdough.txt:"), "{text}");
    assert!(text.contains("Dutch oven") && text.ends_with("Question: how long does the bread bake\n"), "{text}");
}

#[test]
fn nothing_relevant_means_no_invented_answer() {
    let env = indexed();
    // The GGUF path is bogus: with nothing relevant, the model is never loaded.
    let out = env
        .cmd()
        .args(["query", "--json", "boiling point of tungsten in kelvin"])
        .env("ASK_MODEL", env.path("no-model.gguf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out.stdout);
    assert!(v["answer"].is_null() && v["sources"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn query_without_an_index_or_model_fails_clearly() {
    let env = Env::new();
    let out = env.run(&["query", "anything"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("run `ask index PATH` first"), "{}", stderr(&out));
    let env = indexed();
    let out = env.cmd().args(["query", "the deposit"]).env("ASK_MODEL", env.path("missing.gguf")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.gguf"), "{}", stderr(&out));
}

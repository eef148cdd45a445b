use crate::util::*;

#[test]
fn summarizes_a_file_and_standard_input() {
    let env = Env::new();
    env.copy_docs();
    let out = env.ok(&["summarize", "--max-tokens", "40", "docs/sourdough.txt"]);
    assert!(!String::from_utf8(out.stdout).unwrap().trim().is_empty());

    let notes = std::fs::read(fixtures().join("docs/tenancy-notes.md")).unwrap();
    let out = env.run_with_stdin(&["summarize", "--json", "--max-tokens", "24", "-"], &notes);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out.stdout);
    assert!(!v["summary"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["input"], "-");
    assert_eq!(v["pieces"], 1);
    assert_eq!(v["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(v["timings"]["prompt_tokens"].as_u64().unwrap() > 100, "{v}");
}

#[test]
fn text_longer_than_a_piece_is_summarized_in_pieces() {
    let env = Env::new();
    // About 2,500 tokens: more than one 1,536-token piece.
    let log: String = (1..=80)
        .map(|i| format!("Day {i}: the keeper logged {} ships passing the north rocks and a wind of {} knots.\n", i * 3 % 17, 10 + i % 25))
        .collect();
    let out = env.run_with_stdin(&["summarize", "--json", "--max-tokens", "32", "-"], log.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out.stdout);
    assert!(v["pieces"].as_u64().unwrap() >= 2, "{v}");
    assert!(!v["summary"].as_str().unwrap().is_empty(), "{v}");
    // Every piece went through the model, then the combined summaries.
    assert!(v["timings"]["prompt_tokens"].as_u64().unwrap() > 2000, "{v}");
}

#[test]
fn unusable_input_is_a_clear_error() {
    let env = Env::new();
    let out = env.run(&["summarize", "missing.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.txt"), "{}", stderr(&out));

    let out = env.run_with_stdin(&["summarize", "-"], b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("binary"), "{}", stderr(&out));

    let out = env.run_with_stdin(&["summarize", "-"], b"  \n\n ");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no text to summarize"), "{}", stderr(&out));
}

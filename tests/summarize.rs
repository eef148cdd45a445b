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

/// Issue 13: a summary of real German mail with the default model carries
/// the facts of the message: who wrote to whom, when, and about what.
#[test]
fn the_default_model_summarizes_german_mail_faithfully() {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).unwrap();
    std::os::unix::fs::symlink(models_dir(), env.home.join("models")).unwrap();
    let eml = fixtures().join("mail-intl/de-spam-scores.eml");
    let out = env.cmd().env_remove("ASK_MODEL").args(["summarize", "--json"]).arg(&eml).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out.stdout);
    assert_eq!(v["model"], "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "{v}");
    // Who and when, from the headers: ask's to say, not the model's.
    assert_eq!(v["message"]["from"], "Jonas Sterr - ProxForge <jsterr@proxforge.de>", "{v}");
    assert_eq!(v["message"]["date"], "2026-02-13T22:38:16+01:00", "{v}");
    let summary = v["summary"].as_str().unwrap().to_lowercase();
    // Readable prose, not one invented compound word.
    assert!(summary.split_whitespace().count() >= 25, "{summary}");
    // The model's own text names a person of the message and what it is about.
    assert!(summary.contains("jonas") || summary.contains("stoiko"), "{summary}");
    assert!(summary.contains("spam"), "{summary}");
    assert!(["html_short_link_img_1", "parts_differ", "subj_excess_qp", "stalwart"].iter().any(|w| summary.contains(w)), "{summary}");

    // Text output: the headers head the summary.
    let out = env.cmd().env_remove("ASK_MODEL").args(["summarize", "--max-tokens", "16"]).arg(&eml).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Jonas Sterr - ProxForge <jsterr@proxforge.de>, 2026-02-13 22:38, \"Re: (#5290765) Proxmox Shop E-Mails\"\n\n"), "{text}");
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

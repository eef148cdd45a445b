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
    let answer = v["answer"].as_str().unwrap();
    assert!(!answer.is_empty(), "{v}");
    // Every [n] in the answer (the model's own, or the one ask adds when
    // the model wrote none: `attributed`) names one of the sources. Whether
    // the 135M model answers well is not ask's to promise; which passage
    // ask attributes an answer to is tested in src/cmd/query.rs.
    let sources = v["sources"].as_array().unwrap().len();
    for piece in answer.split('[').skip(1) {
        if let Some(n) = piece.split_once(']').and_then(|(n, _)| n.parse::<usize>().ok()) {
            assert!((1..=sources).contains(&n), "[{n}] names no source: {v}");
        }
    }
    if let Some(n) = v["attributed"].as_u64() {
        assert!(answer.ends_with(&format!(" [{n}]")) && (1..=sources as u64).contains(&n), "{v}");
    }
    assert_eq!(v["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    // 16 tokens are too few for a 32-token loop: the turn ended or ran out.
    assert!(matches!(v["stop"].as_str(), Some("end" | "limit")), "{v}");
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
    // The model reads the file's name, not where it lives: the same files
    // anywhere give the same prompt.
    assert!(text.starts_with("Passages:\n\n[1] sourdough.txt:"), "{text}");
    assert!(text.contains("Dutch oven") && text.ends_with("Question: how long does the bread bake\n"), "{text}");
}

#[test]
fn passage_tokens_keep_the_sentences_that_answer() {
    let env = indexed();
    let ask = |extra: &[&str]| {
        let mut args = vec!["query", "--context-only", "-k", "2"];
        args.extend_from_slice(extra);
        args.push("how long does the bread bake in the Dutch oven");
        let out = env.cmd().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let whole = ask(&[]);
    let cut = ask(&["--passage-tokens", "40"]);
    assert!(whole.contains("Levain: mix 50 g starter") && whole.contains("20 minutes with the"), "{whole}");
    // The sentence that answers stays, whole (its wrapped line included),
    // under its passage's number; the levain recipe goes; left-out runs
    // show as "…".
    assert!(cut.contains("[1] sourdough.txt:1-13\n… Bake in a preheated Dutch oven at 250 degrees: 20 minutes with the\nlid on"), "{cut}");
    assert!(!cut.contains("Levain: mix"), "{cut}");
    assert!(cut.len() < whole.len() / 2, "{cut}");
}

#[test]
fn neighbours_widen_a_small_chunk_into_the_text_around_it() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs", "--chunk-tokens", "40", "--chunk-overlap", "8"]);
    let file = std::fs::read_to_string(fixtures().join("docs/sourdough.txt")).unwrap();
    let passage = |neighbours: &str| {
        let args = ["query", "--context-only", "-k", "1", "--neighbours", neighbours, "how long does the bread bake in the Dutch oven"];
        let out = env.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let body = text.split_once("\n").and_then(|(_, rest)| rest.trim_start().split_once("\n")).map(|(head, rest)| (head.to_owned(), rest));
        let (head, rest) = body.unwrap_or_else(|| panic!("{text}"));
        let (body, _) = rest.rsplit_once("\n\nQuestion:").unwrap_or_else(|| panic!("{text}"));
        (head, body.to_owned())
    };
    let (head, alone) = passage("0");
    let (wide_head, wide) = passage("1");
    assert!(head.starts_with("[1] sourdough.txt:") && alone.contains("Dutch oven"), "{head}\n{alone}");
    // The chunk with the text before and after it, as the file has it: the
    // chunks' shared tokens once, the lines cited those of the whole.
    assert!(wide.len() > alone.len() && wide.contains(&alone), "{alone}\n---\n{wide}");
    assert!(file.contains(&wide), "not a stretch of the file:\n{wide}");
    let lines = |h: &str| {
        let (a, b) = h.rsplit_once(':').unwrap().1.split_once('-').unwrap();
        (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap())
    };
    let (a, b) = lines(&wide_head);
    let first = file.lines().nth(a - 1).unwrap();
    assert!(wide.starts_with(first.trim()) || first.contains(wide.lines().next().unwrap()), "{wide_head}\n{wide}");
    assert!(file.lines().nth(b - 1).unwrap().contains(wide.lines().last().unwrap()), "{wide_head}\n{wide}");
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
    assert!(v["stop"].is_null(), "nothing was generated: {v}");
    assert_eq!(v["model"], "no-model.gguf", "named as an answer would name it: {v}");
}

#[test]
fn models_are_chosen_by_short_name_or_file_name() {
    let env = indexed();
    // Names are looked up in <ASK_HOME>/models.
    std::os::unix::fs::symlink(models_dir(), env.home.join("models")).unwrap();
    let ask = |model: &str| env.cmd().env_remove("ASK_MODEL").args(["query", "--json", "--max-tokens", "4", "--model", model, "the deposit"]).output().unwrap();
    for name in ["smollm2", "SmolLM2-135M-Instruct.Q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf"] {
        let out = ask(name);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(json(&out.stdout)["model"], "SmolLM2-135M-Instruct.Q4_1.gguf", "{name}");
    }
    // A name that matches nothing lists what is there.
    let out = ask("llama-9-giant");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("llama-9-giant") && err.contains("qwen2.5-coder-1.5b") && err.contains("smollm2"), "{err}");
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

/// Ctrl-C while the answer streams: generation stops after the current
/// token, the text so far is kept, and the exit code is 130. The model is
/// told to ignore its end-of-turn token, so the signal always arrives long
/// before the answer could end by itself.
#[test]
fn ctrl_c_stops_the_answer_and_keeps_the_text_so_far() {
    use std::io::Read;
    let env = indexed();
    let mut child = env
        .cmd()
        .args(["query", "--ignore-eos", "--max-tokens", "3000", "-k", "1", "how is sourdough baked"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The first byte of the answer: the model is loaded and generating.
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&[&first[..], &rest].concat()).into_owned();
    let (answer, sources) = text.split_once("\n\nSources:\n").unwrap_or_else(|| panic!("no sources: {text}"));
    assert!(!answer.trim().is_empty());
    assert!(sources.starts_with("[1] "), "{text}");
    // Stopped well before 3,000 tokens (about 4 characters each).
    assert!(answer.len() < 4000, "{} characters: the answer was not stopped", answer.len());
}

/// Flags override environment variables, which override the config file,
/// which overrides the default (the README's promise), for the answer
/// model and the index name alike. With nothing relevant to answer from,
/// `--json` names the model without loading it, so bogus paths do.
#[test]
fn flags_beat_the_environment_which_beats_the_config_file() {
    let env = indexed();
    let q = ["query", "--json", "boiling point of tungsten in kelvin"];
    let model = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out.stdout)["model"].as_str().unwrap().to_owned()
    };
    assert_eq!(model(env.cmd().env_remove("ASK_MODEL").args(q)), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "the default");
    env.write("config/ask/config.toml", "model = \"/models/from-file.gguf\"\n");
    assert_eq!(model(env.cmd().env_remove("ASK_MODEL").args(q)), "from-file.gguf");
    assert_eq!(model(env.cmd().env("ASK_MODEL", "/models/from-env.gguf").args(q)), "from-env.gguf");
    assert_eq!(model(env.cmd().env("ASK_MODEL", "/models/from-env.gguf").args(q).args(["--model", "/models/from-flag.gguf"])), "from-flag.gguf");
    // The index: the file names one that does not exist; the environment
    // and the flag name the real one.
    env.write("config/ask/config.toml", "index = \"from-file\"\n");
    let out = env.cmd().args(["search", "bread"]).output().unwrap();
    assert!(!out.status.success() && stderr(&out).contains("no index 'from-file'"), "{}", stderr(&out));
    let out = env.cmd().args(["search", "bread"]).env("ASK_INDEX", "default").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cmd().args(["search", "--index", "default", "bread"]).env("ASK_INDEX", "from-env").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_prompt_opening_is_prefilled_once_and_read_from_the_cache_after() {
    use std::os::unix::fs::MetadataExt;
    let env = indexed();
    let ask = || json(&env.ok(&["query", "--json", "--max-tokens", "8", "-k", "2", "when will the security deposit be returned"]).stdout);
    let openings = env.home.join("openings");
    // The answer's prefill starts after the system message (over 60 tokens
    // of SmolLM2's) and the passages' heading: read while the question was
    // searched, by the first run from the model, and kept in a file.
    let first = ask();
    let (cached, prompt) = (first["timings"]["cached_tokens"].as_u64().unwrap(), first["timings"]["prompt_tokens"].as_u64().unwrap());
    assert!(cached > 60 && cached < prompt, "{first}");
    let files: Vec<_> = std::fs::read_dir(&openings).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().ino();
    // Later runs read the file (one they could not read, they would write
    // again, through a new file renamed over it).
    let second = ask();
    assert_eq!(second["timings"]["cached_tokens"].as_u64(), Some(cached), "{second}");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().ino(), written);
    // A damaged file is a miss, not an error, and is written again.
    std::fs::write(&files[0], b"not safetensors").unwrap();
    assert_eq!(ask()["timings"]["cached_tokens"].as_u64(), Some(cached));
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);
    let rewritten = std::fs::metadata(&files[0]).unwrap().ino();
    ask();
    assert_eq!(std::fs::metadata(&files[0]).unwrap().ino(), rewritten);
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), each
/// source of `ask query` and each hit of `ask search` is an OSC 8 link to
/// its file and first line; piped, or under NO_COLOR, it is plain text.
#[test]
fn sources_are_hyperlinks_on_a_terminal_and_plain_text_elsewhere() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let file = env.path("docs/tenancy-notes.md").canonicalize().unwrap();
    let link = "\x1b]8;;file://";
    let on_terminal = |command: &str, no_color: bool| {
        let mut cmd = env.command("script");
        cmd.args(["-qec", command, "/dev/null"]).env("TERM", "xterm-256color");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output().expect("script(1) from util-linux runs");
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let query = format!("{ASK} query -k 1 'When is the deposit returned?'");
    let search = format!("{ASK} search -k 1 'deposit returned'");
    for command in [&query, &search] {
        let text = on_terminal(command, false);
        let start = text.find(&link).unwrap_or_else(|| panic!("{command}: no link in {text:?}"));
        // file://HOST/PATH#LINE, then the text shown, then the link's end.
        let uri = &text[start + "\x1b]8;;".len()..text[start..].find("\x1b\\").map(|i| start + i).unwrap()];
        assert!(uri.starts_with("file://") && uri.contains(&format!("{}#", file.display())), "{uri}");
        assert!(text[start..].contains("tenancy-notes.md") && text.contains("\x1b]8;;\x1b\\"), "{text:?}");
        assert!(!on_terminal(command, true).contains("\x1b]8;"), "NO_COLOR: no links");
    }
    // Piped: plain text.
    let out = env.ok(&["search", "-k", "1", "deposit returned"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
}

#[test]
fn a_follow_up_continues_the_last_conversation() {
    let env = two_tools();
    let follow_up = ["query", "--json", "--max-tokens", "24", "-k", "1", "Which port does it listen on by default?"];
    // Asked alone, the follow-up finds the tool that says so.
    let alone = json(&env.ok(&follow_up).stdout);
    assert_eq!(first_source(&alone), "kestrel.md", "{alone}");
    let first = json(&env.ok(&["query", "--json", "--max-tokens", "24", "-k", "1", "Who wrote the Otter backup tool?"]).stdout);
    assert_eq!(first_source(&first), "otter.md", "{first}");
    let id = first["conversation"].as_str().unwrap().to_owned();
    // With -c, it is about Otter, which the first turn named.
    let mut args = follow_up.to_vec();
    args.insert(1, "-c");
    let next = json(&env.ok(&args).stdout);
    assert_eq!(first_source(&next), "otter.md", "{next}");
    // The earlier turn was read while the follow-up was searched: its
    // prefill starts after it, not after the system message alone.
    let opening = first["timings"]["cached_tokens"].as_u64().unwrap();
    let cached = next["timings"]["cached_tokens"].as_u64().unwrap();
    assert!(opening > 0 && cached > opening + 10, "{first}\n{next}");
    assert_eq!(next["conversation"].as_str(), Some(id.as_str()));
    // The conversation holds both turns, in a file of the user's own.
    let kept = json(&env.ok(&["conversations", "show", "--json", &id]).stdout);
    let questions: Vec<&str> = kept["turns"].as_array().unwrap().iter().map(|t| t["question"].as_str().unwrap()).collect();
    assert_eq!(questions, ["Who wrote the Otter backup tool?", "Which port does it listen on by default?"]);
    let file = env.home.join("conversations").join(format!("{id}.json"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // --conversation names it too; the alone question started one of its own.
    let named = json(&env.ok(&["query", "--json", "--max-tokens", "8", "-k", "1", "--conversation", &id, "And who wrote it?"]).stdout);
    assert_eq!(first_source(&named), "otter.md", "{named}");
    let list = json_lines(&env.ok(&["conversations", "--json"]).stdout);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["id"].as_str(), Some(id.as_str()), "the most recent first");
    assert_eq!(list[0]["turns"].as_array().unwrap().len(), 3);
    env.ok(&["conversations", "delete", &id]);
    assert!(!file.exists());
}

#[test]
fn bad_conversations_are_refused_clearly() {
    let env = two_tools();
    // An unknown id is a usage error.
    let out = env.run(&["query", "--conversation", "nosuch", "Who wrote it?"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no conversation 'nosuch'"), "{}", stderr(&out));
    assert_eq!(env.run(&["conversations", "delete", "nosuch"]).status.code(), Some(2));
    // A damaged file is named, left as it was, and no panic.
    let damaged = env.write("ask-home/conversations/20260101-000000.json", "{\"id\": \"20260101-000000\", \"turns\": [");
    let out = env.run(&["query", "--conversation", "20260101-000000", "Who wrote it?"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&damaged.display().to_string()) && !stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&damaged).unwrap(), "{\"id\": \"20260101-000000\", \"turns\": [");
    let listed = env.run(&["conversations"]);
    assert!(listed.status.success() && stderr(&listed).contains(&damaged.display().to_string()), "{}", stderr(&listed));
    // It can still be deleted.
    env.ok(&["conversations", "delete", "20260101-000000"]);
    assert!(!damaged.exists());
    // A conversation is with one index.
    let first = json(&env.ok(&["query", "--json", "--max-tokens", "4", "-k", "1", "Who wrote Otter?"]).stdout);
    let id = first["conversation"].as_str().unwrap();
    let out = env.run(&["--index", "other", "query", "--conversation", id, "Who wrote it?"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--index default"), "{}", stderr(&out));
}

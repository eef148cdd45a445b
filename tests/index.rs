use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::io::Write;

use crate::util::*;

/// An encoder directory with the real config and tokenizer but no weights:
/// any run that tries to load the model fails.
fn weightless_encoder(env: &Env) -> std::path::PathBuf {
    let dir = env.path("weightless/all-MiniLM-L6-v2");
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for f in ["config.json", "tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json"] {
        std::fs::copy(env.encoder.join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn unchanged_rerun_reads_nothing_and_never_loads_the_model() {
    let env = Env::new();
    env.copy_docs();
    let first = env.index(&["docs"]);
    assert_eq!(first["new"], 5);
    // Touch a file without changing it: its hash is checked, nothing re-embedded.
    let f = File::options().write(true).open(env.path("docs/sourdough.txt")).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
    drop(f);
    let weightless = weightless_encoder(&env);
    let out = env.cmd().args(["index", "--json", "docs"]).env("ASK_EMBED_MODEL", &weightless).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let second = json(&out.stdout);
    assert_eq!((second["new"].as_u64(), second["changed"].as_u64()), (Some(0), Some(0)), "{second}");
    assert_eq!(second["unchanged"], 5, "{second}");
    assert_eq!(second["chunks"], 0, "{second}");
}

#[test]
fn changed_files_are_reembedded_and_deleted_files_removed() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let before = json(&env.ok(&["status", "--json"]).stdout)["chunks"].as_u64().unwrap();
    let mut f = File::options().append(true).open(env.path("docs/sourdough.txt")).unwrap();
    writeln!(f, "\nVariation: fold 100 g of toasted walnuts and cranberries into the dough.").unwrap();
    drop(f);
    std::fs::remove_file(env.path("docs/code/retry.rs")).unwrap();
    env.write("docs/new-note.txt", "The dentist appointment moved to Thursday at 9.");

    let s = env.index(&["docs"]);
    assert_eq!((s["new"].as_u64(), s["changed"].as_u64(), s["removed"].as_u64()), (Some(1), Some(1), Some(1)), "{s}");
    assert_eq!(s["unchanged"], 3, "{s}");

    let hit = &env.search("walnuts and cranberries", 1)[0];
    assert_eq!(file_name(hit), "sourdough.txt");
    assert!(hit["text"].as_str().unwrap().contains("walnuts"));
    assert_eq!(file_name(&env.search("when is the dentist", 1)[0]), "new-note.txt");
    for hit in env.search("exponential backoff reconnect", 10) {
        assert_ne!(file_name(&hit), "retry.rs", "deleted file still in the index");
    }
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!(status["files"], 5);
    // The changed file's old chunks were replaced, not added to.
    let after = status["chunks"].as_u64().unwrap();
    assert!(after <= before + 2, "chunks grew from {before} to {after}");
}

#[test]
fn paths_from_stdin() {
    let env = Env::new();
    env.copy_docs();
    let out = env.run_with_stdin(&["index", "--stdin", "--json"], b"docs/sourdough.txt\ndocs/tenancy-notes.md\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let s = json(&out.stdout);
    assert_eq!(s["new"], 2, "{s}");
    assert_eq!(json(&env.ok(&["status", "--json"]).stdout)["files"], 2);
}

#[test]
fn index_directories_are_owner_only() {
    let env = Env::new();
    env.copy_docs();
    // Started with the most open umask, as a careless shell or cron might.
    let out = env.command("sh").arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(ASK).args(["index", "docs"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for dir in [env.home.clone(), env.home.join("indexes"), env.index_dir("default")] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    // Every file and folder LanceDB and ask wrote inside it, too.
    let mut stack = vec![env.index_dir("default")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
            seen += 1;
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    assert!(seen > 10, "the tables' files were checked ({seen})");
}

#[test]
fn named_indexes_are_separate() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["--index", "recipes", "docs/sourdough.txt"]);
    env.index(&["docs/tenancy-notes.md"]);
    let recipes = json(&env.ok(&["status", "--json", "--index", "recipes"]).stdout);
    let default = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!((recipes["files"].as_u64(), default["files"].as_u64()), (Some(1), Some(1)));
    let out = env.ok(&["search", "--index", "recipes", "--json", "deposit"]);
    for hit in json_lines(&out.stdout) {
        assert_eq!(file_name(&hit), "sourdough.txt");
    }
}

#[test]
fn quiet_when_not_a_terminal() {
    let env = Env::new();
    env.copy_docs();
    let out = env.ok(&["index", "docs"]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let out = env.ok(&["index", "-v", "docs"]);
    assert!(stderr(&out).contains("0 new, 0 changed, 5 unchanged"), "{}", stderr(&out));
}

#[test]
fn missing_model_is_a_clear_error() {
    let env = Env::new();
    env.copy_docs();
    let out = env.cmd().args(["index", "docs"]).env("ASK_EMBED_MODEL", env.path("nowhere")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("nowhere/config.json") && err.contains("scripts/fetch-models"), "{err}");
}

#[test]
fn asks_own_data_is_never_indexed() {
    let env = Env::new();
    env.write("note.txt", "A note beside the data directory.");
    env.index(&["note.txt"]);
    // The sandbox root holds ASK_HOME; walking it with --hidden must skip it.
    let s = env.index(&["--hidden", "--no-ignore", "."]);
    let status = json(&env.ok(&["status", "--json"]).stdout);
    for hit in env.search("index.json lock chunks", 10) {
        assert!(!hit["path"].as_str().unwrap().contains("ask-home"), "{hit} after {s}");
    }
    assert_eq!(status["files"], 1, "only note.txt: {status}");
}

/// Every file seen counts once: a known file that now fails to extract or
/// is no longer a document counts as failed or skipped, not also changed.
#[test]
fn a_file_that_now_fails_or_is_skipped_counts_once() {
    let env = Env::new();
    // A file without an extension is text while it reads as text.
    env.write("d/NOTES", "Notes on the harbour crane.");
    std::fs::copy(fixtures().join("docs/garden-report.pdf"), env.path("d/report.pdf")).unwrap();
    let first = env.index(&["d"]);
    assert_eq!(first["new"], 2, "{first}");
    // The text becomes binary (no longer a document), the PDF a truncated one.
    env.write("d/NOTES", b"\x00\x01\x02binary\x00".repeat(50));
    std::fs::copy(fixtures().join("bad/truncated.pdf"), env.path("d/report.pdf")).unwrap();
    let out = env.run(&["index", "--json", "d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = json(&out.stdout);
    let counts: Vec<u64> = ["new", "changed", "unchanged", "failed", "skipped"].iter().map(|k| s[k].as_u64().unwrap()).collect();
    assert_eq!(counts, [0, 0, 0, 1, 1], "{s}");
}

/// `-v` away from a terminal (a cron log) names each phase as it begins;
/// without it the run says nothing but errors.
#[test]
fn verbose_runs_log_their_phases_and_quiet_ones_do_not() {
    let env = Env::new();
    env.copy_docs();
    let out = env.ok(&["index", "-v", "docs"]);
    let err = stderr(&out);
    let phases: Vec<&str> = err.lines().filter(|l| l.starts_with("ask: ")).collect();
    assert_eq!(phases, ["ask: reading 5 new or changed files", "ask: loading the encoder", "ask: optimizing the index"], "{err}");
    env.write("docs/new.txt", "A note about the harbour wall.\n");
    let out = env.ok(&["index", "docs"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn with_no_path_ask_index_updates_the_recorded_folders_each_walked_as_recorded() {
    let env = Env::new();
    env.copy_docs();
    env.write("notes/.private/locker.txt", "The code of the gym locker is 4711.");
    env.write("notes/plants.txt", "Water the fern every third day.");
    // Nothing recorded yet: no PATH is an error that names the fix.
    let out = env.run(&["index"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("ask index PATH"), "{}", stderr(&out));

    env.index(&["docs"]);
    env.index(&["--hidden", "notes"]);
    let roots = json(&env.ok(&["status", "--json"]).stdout)["roots"].clone();
    let key = |rel: &str| env.path(rel).canonicalize().unwrap().to_str().unwrap().to_owned();
    assert_eq!(roots[0]["path"], key("docs"), "{roots}");
    assert_eq!((roots[0]["hidden"].as_bool(), roots[1]["hidden"].as_bool()), (Some(false), Some(true)), "{roots}");
    assert_eq!(roots[1]["path"], key("notes"), "{roots}");

    env.write("docs/new-note.txt", "The dentist appointment moved to Thursday at 9.");
    let gone = key("docs/code/retry.rs");
    std::fs::remove_file(env.path("docs/code/retry.rs")).unwrap();
    let check = json(&env.ok(&["status", "--check", "--json"]).stdout)["check"].clone();
    assert_eq!(check["new"], serde_json::json!([key("docs/new-note.txt")]), "{check}");
    assert_eq!(check["gone"], serde_json::json!([gone]), "{check}");

    let s = env.index(&[]);
    assert_eq!((s["new"].as_u64(), s["removed"].as_u64(), s["unchanged"].as_u64()), (Some(1), Some(1), Some(6)), "{s}");
    // notes was walked with --hidden, as recorded: its hidden file stays.
    assert_eq!(file_name(&env.search("gym locker code", 1)[0]), "locker.txt");
    let check = json(&env.ok(&["status", "--check", "--json"]).stdout)["check"].clone();
    assert_eq!((check["new"].as_array().map(Vec::len), check["gone"].as_array().map(Vec::len)), (Some(0), Some(0)), "{check}");

    // A walk flag with no PATH would be ignored: a usage error instead.
    let out = env.run(&["index", "--hidden"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--hidden"), "{}", stderr(&out));
}

#[test]
fn forget_removes_passages_and_later_runs_leave_the_path_out() {
    let env = Env::new();
    env.copy_docs();
    env.write("docs/private/locker.txt", "The code of the gym locker is 4711.");
    env.index(&["docs"]);
    assert_eq!(file_name(&env.search("gym locker code", 1)[0]), "locker.txt");
    let files = |env: &Env| json(&env.ok(&["status", "--json"]).stdout)["files"].as_u64().unwrap();
    let before = files(&env);

    // A path the index holds nothing of: exit 1, named, nothing removed.
    let out = env.run(&["forget", "elsewhere"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("elsewhere: nothing indexed there"), "{}", stderr(&out));
    assert_eq!(files(&env), before);

    let done = json(&env.ok(&["forget", "--json", "docs/private"]).stdout);
    assert_eq!((done["files"].as_u64(), done["chunks"].as_u64()), (Some(1), Some(1)), "{done}");
    let private = env.path("docs/private").canonicalize().unwrap();
    assert_eq!(done["passed_over"], serde_json::json!([private.to_str().unwrap()]), "{done}");
    assert!(env.search("gym locker code", 5).iter().all(|h| file_name(h) != "locker.txt"));
    assert!(env.path("docs/private/locker.txt").is_file(), "the file itself stays");

    // The next run with no path walks docs again but passes over private/,
    // and --check does not count its file as new.
    let s = env.index(&[]);
    assert_eq!((s["new"].as_u64(), s["removed"].as_u64()), (Some(0), Some(0)), "{s}");
    let status = json(&env.ok(&["status", "--check", "--json"]).stdout);
    assert_eq!(status["check"]["new"], serde_json::json!([]), "{status}");
    assert_eq!(status["forgotten"], serde_json::json!([private.to_str().unwrap()]), "{status}");

    // Naming it again brings it back.
    let s = env.index(&["docs/private"]);
    assert_eq!(s["new"].as_u64(), Some(1), "{s}");
    assert_eq!(file_name(&env.search("gym locker code", 1)[0]), "locker.txt");

    // A recorded folder: all of it goes, and it is no longer recorded.
    let done = json(&env.ok(&["forget", "--json", "docs"]).stdout);
    assert_eq!(done["files"].as_u64(), Some(before), "{done}");
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!((status["files"].as_u64(), status["chunks"].as_u64()), (Some(0), Some(0)), "{status}");
    assert!(status.get("roots").is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)), "{status}");
}

#[test]
fn status_all_lists_every_index() {
    let env = Env::new();
    env.copy_docs();
    // None yet: said, and no JSON lines.
    let out = env.ok(&["status", "--all"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no indexes"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(env.ok(&["status", "--all", "--json"]).stdout.is_empty());

    env.index(&["--index", "recipes", "docs/sourdough.txt"]);
    env.index(&["docs"]);
    let all = json_lines(&env.ok(&["status", "--all", "--json"]).stdout);
    let names: Vec<&str> = all.iter().map(|s| s["index"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "recipes"]);
    assert_eq!(all[1]["files"].as_u64(), Some(1));
    assert!(all[0]["files"].as_u64().unwrap() > 1 && all[0]["bytes"].as_u64().unwrap() > 0, "{}", all[0]);
    assert!(all.iter().all(|s| s["encoder"].is_string() && s["indexed_at"].is_string()));

    // The table: a header, one row per index, the one in use marked.
    let out = env.ok(&["status", "--all", "--index", "recipes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("INDEX") && rows[0].contains("LAST INDEXED"), "{text}");
    assert!(rows[1].starts_with("default ") && rows[2].starts_with("recipes* "), "{text}");
    // One index is a flag's job, not both.
    assert_eq!(env.run(&["status", "--all", "--check"]).status.code(), Some(2));
}

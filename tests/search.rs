use std::io::Read;
use std::process::Stdio;

use crate::util::*;

/// Each fixture format is found by a question that shares few words with it.
#[test]
fn every_format_is_found_by_meaning() {
    let env = Env::new();
    env.copy_docs();
    let summary = env.index(&["docs"]);
    assert_eq!(summary["new"], 5, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");

    let cases = [
        ("when do I get my security deposit back from the landlord", "tenancy-notes.md"),
        ("how long should bread bake in a dutch oven", "sourdough.txt"),
        ("retry a network connection with increasing delays", "retry.rs"),
        ("ship in fog saw the lighthouse", "lighthouse.html"),
        ("money approved for watering the raised beds", "garden-report.pdf"),
    ];
    for (query, want) in cases {
        let hits = env.search(query, 3);
        assert_eq!(file_name(&hits[0]), want, "query {query:?} ranked {hits:?}");
    }
}

#[test]
fn json_lines_carry_rank_score_path_text_and_location() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let hits = env.search("irrigation budget", 5);
    assert_eq!(hits.len(), 5);
    for (i, hit) in hits.iter().enumerate() {
        assert_eq!(hit["rank"], i + 1);
        for key in ["score", "path", "text", "line_start", "line_end", "page"] {
            assert!(hit.get(key).is_some(), "{key} missing from {hit}");
        }
    }
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "scores not sorted: {scores:?}");
    // The budget is on the PDF's second page, which the hit must cite.
    assert_eq!(file_name(&hits[0]), "garden-report.pdf");
    assert_eq!(hits[0]["page"], 2, "{}", hits[0]);
    assert!(hits[0]["text"].as_str().unwrap().contains("3,400 dollars"));
    // Text files cite lines: the deposit sentence is on lines 5-7 of the note.
    let hit = &env.search("security deposit of 1,200 euros", 1)[0];
    assert_eq!(file_name(hit), "tenancy-notes.md");
    assert!(hit["line_start"].as_u64().unwrap() <= 5 && hit["line_end"].as_u64().unwrap() >= 7, "{hit}");
    assert!(hit["page"].is_null());
}

#[test]
fn html_scripts_and_styles_are_not_indexed() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    for hit in env.search("zebracorn analytics tracking token", 10) {
        let text = hit["text"].as_str().unwrap();
        assert!(!text.contains("zebracorn") && !text.contains("font-family"), "{text}");
    }
}

#[test]
fn human_output_shows_location_and_score() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let out = env.ok(&["search", "sourdough levain", "-k", "3"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with(" 1. 0.") && first.contains("(similarity 0."), "{text}");
    assert!(first.contains("sourdough.txt:"), "{text}");
    // The printed score is the one the list is ranked by: it never rises.
    let scores: Vec<f32> = text
        .lines()
        .filter(|l| l.chars().nth(2) == Some('.'))
        .map(|l| l[4..].split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(scores.len(), 3, "{text}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}\n{text}");
}

#[test]
fn broken_pipe_exits_quietly() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let mut child = env.cmd().args(["search", "bread", "-k", "50"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away before ask writes
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn searching_before_indexing_says_what_to_do() {
    let env = Env::new();
    let out = env.run(&["search", "anything"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("run `ask index PATH` first"), "{}", stderr(&out));
}

#[test]
fn status_reports_counts_models_and_time() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!(status["files"], 5, "{status}");
    assert_eq!(status["failed"], 0);
    assert!(status["chunks"].as_u64().unwrap() >= 5);
    assert!(status["bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["encoder"], "all-MiniLM-L6-v2");
    assert_eq!(status["dim"], 384);
    assert!(status["indexed_at"].as_str().unwrap().ends_with('Z'), "{status}");
    let human = String::from_utf8(env.ok(&["status"]).stdout).unwrap();
    assert!(human.contains("files:        5 indexed"), "{human}");
}

/// An index is searched and updated only with the encoder it was built
/// with; both commands say which that was, each with its own way out.
#[test]
fn another_encoder_is_refused_by_search_and_index_alike() {
    let env = Env::new();
    env.write("d/a.txt", "The harbour crane lifts forty tonnes.");
    env.index(&["d"]);
    // As if another encoder had built the index.
    let meta = env.index_dir("default").join("index.json");
    let mut v = json(&std::fs::read(&meta).unwrap());
    v["encoder"] = "all-mpnet-base-v2".into();
    v["dim"] = 768.into();
    std::fs::write(&meta, v.to_string()).unwrap();
    let fact = "index was built with encoder all-mpnet-base-v2 (candle, 768 dims), not all-MiniLM-L6-v2 (candle, 384 dims)";
    let out = env.run(&["search", "crane"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(fact) && stderr(&out).contains("pass --embed-model for all-mpnet-base-v2"), "{}", stderr(&out));
    let out = env.run(&["index", "d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(fact) && stderr(&out).contains("--index NAME"), "{}", stderr(&out));
}

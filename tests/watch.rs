//! `ask watch`: changes reach the index while it runs. Every check polls
//! the index (bounded), never sleeps a fixed time and then asserts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const PATIENCE: Duration = Duration::from_secs(90);

/// A running `ask watch --json`, and the batches it reports.
struct Watch {
    child: Child,
    batches: Receiver<Value>,
}

/// A test that fails must not leave its watch running over a removed folder.
impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn start(env: &Env, dir: &str) -> Watch {
        Watch::start_with(env, &[dir])
    }

    /// `ask watch` with these paths and options (no path: the recorded roots).
    fn start_with(env: &Env, args: &[&str]) -> Watch {
        let mut child = env
            .cmd()
            .args(["watch", "--json", "--settle", "200ms"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, batches) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str::<Value>(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        let watch = Watch { child, batches };
        // The catch-up pass comes first: the watch is set up by then.
        let first = watch.batches.recv_timeout(PATIENCE).expect("the first pass is reported");
        assert!(first["new"].is_u64(), "{first}");
        watch
    }

    /// Every batch reported so far.
    fn drain(&self) -> Vec<Value> {
        self.batches.try_iter().collect()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < PATIENCE, "ask watch did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Each indexed file's name and the text of its first passage.
fn indexed(env: &Env) -> Vec<(String, String)> {
    let out = env.ok(&["search", "notes about anything", "--json", "-k", "5000"]);
    let mut files: Vec<(String, String)> =
        json_lines(&out.stdout).iter().map(|h| (file_name(h), h["text"].as_str().unwrap().to_owned())).collect();
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    files
}

/// Polls until `check` holds (at most PATIENCE), then returns.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < PATIENCE, "{what}: not seen within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text_of(env: &Env, file: &str) -> Option<String> {
    indexed(env).into_iter().find(|(f, _)| f == file).map(|(_, t)| t)
}

#[test]
fn creates_edits_saves_moves_and_deletes_reach_the_index() {
    let env = Env::new();
    env.write("notes/kept.txt", "The lighthouse keeper climbs 120 steps at dusk.");
    let watch = Watch::start(&env, "notes");
    assert!(text_of(&env, "kept.txt").is_some(), "the catch-up pass indexed what was there");

    env.write("notes/heron.txt", "The heron nests by the weir in spring.");
    eventually("a new file", || text_of(&env, "heron.txt").is_some_and(|t| t.contains("heron nests")));

    env.write("notes/heron.txt", "The otter swims below the weir at night.");
    eventually("an edit", || text_of(&env, "heron.txt").is_some_and(|t| t.contains("otter")));

    // An editor's atomic save: a temporary file renamed over the original.
    env.write("notes/.heron.txt.swp", "The kingfisher dives from the willow.");
    std::fs::rename(env.path("notes/.heron.txt.swp"), env.path("notes/heron.txt")).unwrap();
    eventually("an atomic save", || text_of(&env, "heron.txt").is_some_and(|t| t.contains("kingfisher")));
    assert!(text_of(&env, ".heron.txt.swp").is_none(), "the temporary file is never indexed");

    // A move keeps its embeddings: no chunk is embedded again.
    watch.drain();
    std::fs::create_dir(env.path("notes/river")).unwrap();
    std::fs::rename(env.path("notes/heron.txt"), env.path("notes/river/kingfisher.txt")).unwrap();
    eventually("a move into a new folder", || text_of(&env, "kingfisher.txt").is_some() && text_of(&env, "heron.txt").is_none());
    // A batch's line comes after its commit, so it may lag the search: the
    // atomic save's line can arrive only now. The move's batch is the one
    // that removed a file and added one; it embedded nothing.
    let mut seen: Vec<Value> = Vec::new();
    let mut moved = None;
    eventually("the move's batch line", || {
        seen.extend(watch.drain());
        moved = seen.iter().find(|b| b["removed"] == 1 && b["new"] == 1).cloned();
        moved.is_some()
    });
    let moved = moved.unwrap();
    assert_eq!((moved["reused"].as_u64(), moved["chunks"].as_u64()), (Some(1), Some(0)), "{seen:?}");

    // A file in the folder created after the watch began.
    env.write("notes/river/deeper/otter.md", "# Otters\n\nOtters hunt eels in the millpond.");
    eventually("a file in a new subfolder", || text_of(&env, "otter.md").is_some());

    std::fs::remove_file(env.path("notes/kept.txt")).unwrap();
    eventually("a deletion", || text_of(&env, "kept.txt").is_none());

    assert!(watch.stop().success(), "SIGTERM ends the watch with exit 0");
}

#[test]
fn a_burst_of_two_thousand_files_is_indexed_in_batches() {
    let env = Env::new();
    env.write("burst/.keep", "");
    let watch = Watch::start(&env, "burst");
    for i in 0..2000 {
        env.write(&format!("burst/d{}/note-{i}.txt", i % 20), format!("Note {i} of the burst about crane {i}."));
    }
    let mut new = 0;
    eventually("2,000 new files", || {
        new += watch.drain().iter().map(|b| b["new"].as_u64().unwrap()).sum::<u64>();
        new >= 2000
    });
    assert_eq!(new, 2000, "each file is counted once, in whatever batches");
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!(status["files"], 2000, "{status}");
    assert!(watch.stop().success());
}

#[test]
fn a_watched_index_stays_readable_and_another_writer_can_run() {
    let env = Env::new();
    env.write("notes/a.txt", "Alpha notes about the harbour.");
    let watch = Watch::start(&env, "notes");
    // The lock is held only while a batch is written: a cron run gets it.
    env.write("other/b.txt", "Beta notes about the tides.");
    let s = env.index(&["--wait", "other"]);
    assert_eq!(s["new"], 1, "{s}");
    assert!(text_of(&env, "b.txt").is_some() && text_of(&env, "a.txt").is_some());
    assert!(watch.stop().success());
}

#[test]
fn a_watched_folder_deleted_and_made_again_is_watched_again() {
    let env = Env::new();
    env.write("notes/kestrel.txt", "The kestrel hovers over the meadow.");
    let watch = Watch::start(&env, "notes");
    std::fs::remove_dir_all(env.path("notes")).unwrap();
    eventually("the folder's deletion", || text_of(&env, "kestrel.txt").is_none());
    env.write("notes/badger.txt", "The badger digs under the hedge.");
    eventually("a file in the folder made again", || text_of(&env, "badger.txt").is_some());
    // Watched as a whole again: a change deeper down reaches the index.
    env.write("notes/deeper/stoat.md", "# Stoats\n\nThe stoat turns white in winter.");
    eventually("a file in a new subfolder of it", || text_of(&env, "stoat.md").is_some());
    assert!(watch.stop().success());
}

#[test]
fn with_no_path_ask_watch_watches_the_recorded_folders_each_walked_as_recorded() {
    let env = Env::new();
    env.write("notes/wren.txt", "The wren sings from the bramble.");
    env.write("diary/monday.txt", "Monday: rain all day.");
    env.index(&["notes"]);
    env.index(&["--hidden", "diary"]);
    let watch = Watch::start_with(&env, &[]);
    // Hidden files are skipped in notes, as when it was indexed, and kept
    // in diary, which was indexed with --hidden. Each hidden file is written
    // before a visible one in the same folder, so once the visible one is
    // found, the hidden one's event has been seen too.
    env.write("notes/.draft/heron.txt", "The heron stands in the shallows.");
    env.write("notes/robin.txt", "The robin follows the spade.");
    env.write("diary/.private/tuesday.txt", "Tuesday: the locker code is 4711.");
    env.write("diary/wednesday.txt", "Wednesday: sun at last.");
    eventually("a new file in each recorded folder", || {
        text_of(&env, "robin.txt").is_some() && text_of(&env, "wednesday.txt").is_some()
    });
    eventually("the hidden file below the folder indexed with --hidden", || text_of(&env, "tuesday.txt").is_some());
    assert!(text_of(&env, "heron.txt").is_none(), "notes is walked without --hidden, as recorded");
    assert!(watch.stop().success());

    // A walk flag with no path would be ignored: a usage error instead.
    let out = env.run(&["watch", "--no-ignore"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `ask watch PATH`, like `ask index PATH`, walks a path forgotten below
/// PATH again; `ask watch` with no path keeps it forgotten.
#[test]
fn watching_a_named_folder_brings_back_what_was_forgotten_in_it() {
    let env = Env::new();
    env.write("notes/wren.txt", "The wren sings from the bramble.");
    env.write("notes/private/heron.txt", "The heron stands in the shallows.");
    env.index(&["notes"]);
    env.ok(&["forget", "notes/private"]);
    let watch = Watch::start_with(&env, &[]);
    env.write("notes/robin.txt", "The robin follows the spade.");
    eventually("a new file in the recorded folder", || text_of(&env, "robin.txt").is_some());
    assert!(text_of(&env, "heron.txt").is_none(), "forgotten, and the recorded roots' walk passes over it");
    assert!(watch.stop().success());
    let watch = Watch::start_with(&env, &["notes"]);
    eventually("the forgotten folder named again", || text_of(&env, "heron.txt").is_some());
    assert!(watch.stop().success());
}

#[test]
fn an_encoder_freed_when_idle_is_loaded_again_by_the_next_change() {
    let env = Env::new();
    env.write("notes/curlew.txt", "The curlew calls across the estuary.");
    let watch = Watch::start_with(&env, &["notes", "--unload-after", "1"]);
    // One change loads the encoder; then a second of quiet frees it.
    env.write("notes/dunlin.txt", "The dunlin feeds at low tide.");
    eventually("the first change", || text_of(&env, "dunlin.txt").is_some());
    // The batch, then, after an idle second, the encoder freed.
    let mut lines = watch.drain();
    eventually("the encoder freed after an idle second", || {
        lines.extend(watch.drain());
        lines.iter().any(|l| l["unloaded"] == "encoder")
    });
    let at = lines.iter().position(|l| l["unloaded"] == "encoder").unwrap();
    assert!(lines[..at].iter().any(|b| b["new"] == 1), "{lines:?}");
    assert_eq!(lines[at]["index"], "default");
    // The next change loads it again.
    env.write("notes/godwit.txt", "The godwit probes the mud with its long bill.");
    eventually("a change after the encoder was freed", || text_of(&env, "godwit.txt").is_some_and(|t| t.contains("godwit")));
    assert_eq!(env.search("godwit long bill", 1)[0]["path"].as_str().map(|p| p.ends_with("godwit.txt")), Some(true));
    assert!(watch.stop().success());
}

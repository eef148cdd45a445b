use std::fs::File;
use std::path::Path;
use std::process::Stdio;

use crate::util::*;

/// Writes the bad inputs of every kind into `bad/`, plus one good file.
fn bad_inputs(env: &Env) {
    let bad = fixtures().join("bad");
    env.write("bad/truncated.pdf", std::fs::read(bad.join("truncated.pdf")).unwrap());
    env.write("bad/encrypted.pdf", std::fs::read(bad.join("encrypted.pdf")).unwrap());
    // An ELF header and NUL bytes behind a .txt name.
    env.write("bad/program.txt", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0\x01\0\0\0");
    // ISO-8859-1 text: not UTF-8, must still be indexed.
    env.write("bad/latin1.txt", b"Recette: cr\xe8me br\xfbl\xe9e au caramel, servie froide apr\xe8s le d\xeener.\n");
    // Invalid UTF-8 in the middle of otherwise fine text.
    env.write("bad/mixed.md", b"# Mixed\n\nThe harbour master logs every \xff\xfe arrival in the ledger.\n");
    // A symlink pointing nowhere (only looked at with --follow).
    std::os::unix::fs::symlink(env.path("bad/nowhere"), env.path("bad/dangling.txt")).unwrap();
    env.write("bad/good.txt", "The orchard's apple harvest was picked in late September.");
}

#[test]
fn bad_files_are_reported_counted_and_skipped() {
    let env = Env::new();
    bad_inputs(&env);
    let out = env.run(&["index", "--json", "--follow", "bad"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    for (name, reason) in [
        ("truncated.pdf", "PDF"),
        ("encrypted.pdf", "encrypted"),
        ("program.txt", "binary"),
        ("dangling.txt", "No such file"),
    ] {
        let line = err.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} not reported:\n{err}"));
        assert!(line.contains(reason), "{name}: {line}");
        assert!(line.contains(&env.path("bad").display().to_string()), "path missing: {line}");
    }
    let s = json(&out.stdout);
    assert_eq!(s["failed"], 4, "{s}");
    assert_eq!(s["new"], 3, "latin1, mixed and good are indexed: {s}");

    // The text in a non-UTF-8 file is decoded, not dropped or mangled.
    let hit = &env.search("crème brûlée", 1)[0];
    assert_eq!(file_name(hit), "latin1.txt");
    assert!(hit["text"].as_str().unwrap().contains("crème brûlée"), "{hit}");
    assert_eq!(file_name(&env.search("harbour master ledger", 1)[0]), "mixed.md");

    // --strict turns file failures into exit code 3; failures are not re-reported
    // for unchanged files, but a changed bad file is.
    env.write("bad/program.txt", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0\x02");
    let out = env.run(&["index", "--strict", "bad"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("program.txt"));
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!(status["files"], 3, "{status}");
}

#[cfg(unix)]
#[test]
fn unreadable_directory_is_reported_and_its_files_kept() {
    if running_as_root() {
        // root reads everything; the walker never sees a permission error.
        eprintln!("skipped: running as root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.write("notes/locked/secret.txt", "The vault code is in the blue notebook.");
    env.write("notes/open.txt", "Open notes about the garden.");
    env.index(&["notes"]);
    std::fs::set_permissions(env.path("notes/locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = env.run(&["index", "--json", "notes"]);
    std::fs::set_permissions(env.path("notes/locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(out.status.success());
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    let s = json(&out.stdout);
    assert_eq!((s["failed"].as_u64(), s["removed"].as_u64()), (Some(1), Some(0)), "{s}");
}

fn running_as_root() -> bool {
    // Avoids a libc dependency: root's uid is 0 in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// File names that are not UTF-8 (Latin-1 names from an old disk): two
/// that differ only in such a byte are two files in the index, a second
/// run finds both unchanged, and removing one removes only it.
#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_stay_apart() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let name = |b: &[u8]| env.path("old").join(std::ffi::OsStr::from_bytes(b));
    std::fs::create_dir_all(env.path("old")).unwrap();
    std::fs::write(name(b"caf\xe9.txt"), "The zebra called Quaxo lives in Ghent.").unwrap();
    std::fs::write(name(b"caf\xe8.txt"), "The giraffe called Quaxo lives in Bruges.").unwrap();
    let s = env.index(&["old"]);
    assert_eq!(s["new"], 2, "{s}");
    let hits = env.search("Quaxo", 5);
    let mut texts: Vec<&str> = hits.iter().map(|h| h["text"].as_str().unwrap()).collect();
    texts.sort();
    assert_eq!(texts, ["The giraffe called Quaxo lives in Bruges.", "The zebra called Quaxo lives in Ghent."], "{hits:?}");
    // The printed paths tell the two apart, each ending in its own byte.
    let mut ends: Vec<String> = hits.iter().map(|h| h["path"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()).collect();
    ends.sort();
    assert_eq!(ends, ["caf\u{FFFD}E8.txt", "caf\u{FFFD}E9.txt"]);
    let s = env.index(&["old"]);
    assert_eq!((s["new"].as_u64(), s["changed"].as_u64(), s["unchanged"].as_u64()), (Some(0), Some(0), Some(2)), "{s}");
    std::fs::remove_file(name(b"caf\xe8.txt")).unwrap();
    let s = env.index(&["old"]);
    assert_eq!((s["removed"].as_u64(), s["unchanged"].as_u64()), (Some(1), Some(1)), "{s}");
    let hits = env.search("Quaxo", 5);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0]["text"].as_str().unwrap().contains("zebra"), "{hits:?}");
}

#[test]
fn symlink_loops_terminate() {
    let env = Env::new();
    env.write("tree/a/note.txt", "Loops must not hang the walker.");
    std::os::unix::fs::symlink(env.path("tree"), env.path("tree/a/back-to-top")).unwrap();
    let out = env.run(&["index", "--json", "--follow", "tree"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("loop"), "{}", stderr(&out));
    assert_eq!(json(&out.stdout)["new"], 1);
    // Without --follow the link is not a file to index and not an error.
    let out = env.run(&["index", "--json", "tree"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn oversized_files_are_skipped() {
    let env = Env::new();
    env.write("d/big.txt", "word ".repeat(2000));
    env.write("d/small.txt", "A small file.");
    let s = env.index(&["--max-file-size", "5K", "d"]);
    assert_eq!((s["new"].as_u64(), s["skipped"].as_u64()), (Some(1), Some(1)), "{s}");
    // A mailbox over the limit is indexed: it is read a message at a time,
    // and the limit holds each message, so the one message over it is left out.
    let mut mbox = String::new();
    for i in 0..40 {
        mbox.push_str(&format!("From a@example.org Mon Mar  4 10:00:00 2024\nFrom: A <a@example.org>\nSubject: Note {i}\n\nNote {i} about the harbour crane.\n\n"));
    }
    mbox.push_str(&format!("From a@example.org Mon Mar  4 10:00:00 2024\nFrom: A <a@example.org>\nSubject: Huge\n\n{}\n\n", "hippopotamus ".repeat(500)));
    env.write("m/Inbox", mbox);
    let s = env.index(&["--max-file-size", "5K", "m"]);
    assert_eq!((s["new"].as_u64(), s["skipped"].as_u64()), (Some(1), Some(0)), "{s}");
    assert_eq!(s["chunks"], 40, "one chunk per message but the huge one: {s}");
    assert!(env.search("hippopotamus", 5).iter().all(|h| h["subject"] != "Huge"));
}

#[test]
fn a_held_lock_makes_a_second_run_exit_75_or_wait() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs/sourdough.txt"]);
    let lock = File::options().read(true).write(true).open(env.index_dir("default").join("lock")).unwrap();
    lock.lock().unwrap();
    let out = env.run(&["index", "docs"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("is writing to the index") && stderr(&out).contains("pass --wait"), "{}", stderr(&out));
    // With --wait it says it is waiting and blocks; the lock is released
    // only once it has said so, so the run below did wait for it.
    let mut child = env.cmd().args(["index", "--wait", "--json", "docs"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(line.starts_with("ask: waiting for the `ask index` run"), "{line}");
    assert!(child.try_wait().unwrap().is_none(), "still waiting while the lock is held");
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(json(&out.stdout)["new"], 4);
}

#[test]
fn concurrent_runs_never_corrupt_the_index() {
    let env = Env::new();
    env.copy_docs();
    let children: Vec<_> = (0..3).map(|_| env.cmd().args(["index", "docs"]).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(matches!(out.status.code(), Some(0) | Some(75)), "{}", stderr(&out));
    }
    let s = env.index(&["docs"]);
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!(status["files"], 5, "{status} after {s}");
    assert_eq!(file_name(&env.search("security deposit", 1)[0]), "tenancy-notes.md");
}

/// Counts the committed versions of a LanceDB table.
fn versions(table: &Path) -> usize {
    // One `N.manifest` per committed version; lance also keeps a
    // `latest_version_hint.json` there, which is not a version.
    let manifest = |e: &std::fs::DirEntry| e.path().extension().is_some_and(|x| x == "manifest");
    std::fs::read_dir(table.join("_versions")).map(|d| d.filter_map(|e| e.ok()).filter(manifest).count()).unwrap_or(0)
}

/// Waits (on the file system, not the clock) until `table` has `n`
/// committed versions, then kills `child` with SIGKILL.
fn kill_after_versions(child: &mut std::process::Child, table: &Path, n: usize) {
    while versions(table) < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("finished before it could be killed: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_killed_run_is_continued_without_losing_committed_work() {
    let env = Env::new();
    for i in 0..120 {
        env.write(&format!("many/note-{i:03}.txt"), format!("Note {i}: the meeting about topic {i} moved to room {}.", i * 7));
    }
    let mut child = env.cmd().args(["index", "--commit-every", "8", "many"]).stderr(Stdio::null()).spawn().unwrap();
    // Some files are committed, then the run is killed.
    kill_after_versions(&mut child, &env.index_dir("default").join("files.lance"), 3);

    // Whatever the kill left, `status --check` says whether the index is
    // whole (0) or not yet (4), and nothing else.
    let out = env.run(&["status", "--check", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 4)), "{}", stderr(&out));
    assert_eq!(json(&out.stdout)["check"]["whole"].as_bool(), Some(out.status.code() == Some(0)));

    // The kernel released the dead run's lock: this run does not exit 75.
    let s = env.index(&["many"]);
    let new = s["new"].as_u64().unwrap();
    assert!(new < 120, "work committed before the kill was lost: {s}");
    assert_eq!(s["unchanged"].as_u64().unwrap() + new, 120, "{s}");
    // Same content as an index built without interruption.
    let status = json(&env.ok(&["status", "--json"]).stdout);
    let clean = env.index(&["--index", "clean", "many"]);
    let clean_status = json(&env.ok(&["status", "--json", "--index", "clean"]).stdout);
    assert_eq!(clean["new"], 120);
    assert_eq!(status["files"], 120);
    assert_eq!(status["chunks"], clean_status["chunks"], "duplicate or missing chunks after the kill");
    let check = json(&env.ok(&["status", "--check", "--json"]).stdout)["check"].clone();
    assert_eq!(check["whole"], true, "{check}");
    for list in ["unrecorded", "mismatched", "duplicated", "changed", "gone", "unreadable"] {
        assert_eq!(check[list].as_array().map(Vec::len), Some(0), "{list}: {check}");
    }
    // Files changed and removed since are named, and are no damage.
    env.write("many/note-007.txt", "Note 7 moved again, to the library.");
    std::fs::remove_file(env.path("many/note-008.txt")).unwrap();
    let out = env.ok(&["status", "--check", "--json"]);
    let check = &json(&out.stdout)["check"];
    let one = |p: &str| serde_json::json!([env.path(p).canonicalize().unwrap_or_else(|_| env.path(p)).display().to_string()]);
    assert_eq!(check["changed"], one("many/note-007.txt"), "{check}");
    assert_eq!(check["gone"].as_array().unwrap().len(), 1, "{check}");
    assert!(check["gone"][0].as_str().unwrap().ends_with("/many/note-008.txt"), "{check}");
    let human = String::from_utf8(env.ok(&["status", "--check"]).stdout).unwrap();
    assert!(human.contains("check:        whole") && human.contains("1 changed, 1 gone"), "{human}");
}

/// The index a run killed between storing a file's chunks and recording
/// the file leaves (the record is written last): chunks of `d/gone.txt`
/// that no record owns. Made here by giving an index of both files the
/// file records of an index of one, and the marker of an unfinished run.
fn half_written(env: &Env) {
    env.write("d/kept.txt", "The lighthouse keeper logs every ship.");
    env.write("d/gone.txt", "The quartermaster counts the barrels of rum.");
    env.index(&["--index", "half", "d"]);
    env.index(&["--index", "one", "d/kept.txt"]);
    let files = env.index_dir("half").join("files.lance");
    std::fs::remove_dir_all(&files).unwrap();
    copy_dir(&env.index_dir("one").join("files.lance"), &files);
    std::fs::write(env.index_dir("half").join("unfinished"), "").unwrap();
}

#[test]
fn status_check_finds_chunks_no_record_owns_and_the_next_run_removes_them() {
    let env = Env::new();
    half_written(&env);
    let out = env.run(&["status", "--check", "--json", "--index", "half"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let check = &json(&out.stdout)["check"];
    assert_eq!(check["whole"], false, "{check}");
    assert!(check["unrecorded"][0].as_str().unwrap().ends_with("/d/gone.txt"), "{check}");
    let human = String::from_utf8(env.run(&["status", "--check", "--index", "half"]).stdout).unwrap();
    assert!(human.contains("NOT whole") && human.contains("gone.txt"), "{human}");
    // The file is deleted before the next run: no pass over it would ever
    // remove its chunks, so the run that finds the marker does.
    std::fs::remove_file(env.path("d/gone.txt")).unwrap();
    let s = env.index(&["--index", "half", "d"]);
    assert_eq!((s["removed"].as_u64(), s["new"].as_u64(), s["unchanged"].as_u64()), (Some(1), Some(0), Some(1)), "{s}");
    env.ok(&["status", "--check", "--index", "half"]);
    let hits = json_lines(&env.ok(&["search", "--index", "half", "--json", "-k", "5", "quartermaster barrels of rum"]).stdout);
    assert!(hits.iter().all(|h| !h["path"].as_str().unwrap().ends_with("gone.txt")), "{hits:?}");
    assert!(!env.index_dir("half").join("unfinished").exists(), "a finished run leaves no marker");
}

/// Damage no unfinished run explains (here the file table of another
/// index copied over, and no marker) is found by the row counts every run
/// compares, and repaired as after a killed run.
#[test]
fn chunks_no_record_owns_are_removed_without_the_marker_of_an_unfinished_run() {
    let env = Env::new();
    half_written(&env);
    std::fs::remove_file(env.index_dir("half").join("unfinished")).unwrap();
    std::fs::remove_file(env.path("d/gone.txt")).unwrap();
    let s = env.index(&["--index", "half", "d"]);
    assert_eq!((s["removed"].as_u64(), s["unchanged"].as_u64()), (Some(1), Some(1)), "{s}");
    env.ok(&["status", "--check", "--index", "half"]);
    let hits = json_lines(&env.ok(&["search", "--index", "half", "--json", "-k", "5", "quartermaster barrels of rum"]).stdout);
    assert!(hits.iter().all(|h| !h["path"].as_str().unwrap().ends_with("gone.txt")), "{hits:?}");
}

#[test]
fn chunks_no_record_owns_of_a_file_still_there_are_written_again_once() {
    let env = Env::new();
    half_written(&env);
    let s = env.index(&["--index", "half", "d"]);
    assert_eq!((s["new"].as_u64(), s["removed"].as_u64()), (Some(1), Some(0)), "{s}");
    // Its stored vectors are used again, not computed again.
    assert_eq!((s["chunks"].as_u64(), s["reused"].as_u64()), (Some(0), Some(1)), "{s}");
    env.ok(&["status", "--check", "--index", "half"]);
    let status = json(&env.ok(&["status", "--json", "--index", "half"]).stdout);
    let clean = json(&env.ok(&["status", "--json", "--index", "one"]).stdout);
    // kept.txt's chunks plus gone.txt's, each once.
    env.index(&["--index", "one", "d"]);
    let clean_both = json(&env.ok(&["status", "--json", "--index", "one"]).stdout);
    assert!(clean["chunks"].as_u64() < clean_both["chunks"].as_u64());
    assert_eq!(status["chunks"], clean_both["chunks"], "{status} {clean_both}");
    assert_eq!(status["files"], 2);
}

#[test]
fn a_killed_run_keeps_the_messages_of_a_large_mailbox_it_embedded() {
    let env = Env::new();
    let mut mbox = String::new();
    for i in 0..200 {
        mbox.push_str(&format!(
            "From s{i}@example.org Mon Mar  4 10:00:00 2024\nFrom: Sender {i} <s{i}@example.org>\nSubject: Note {i}\n\
             Message-ID: <note-{i}@example.org>\n\nThe shipment {i} of copper pipes leaves dock {} on day {}.\n\n",
            i * 3,
            i % 28 + 1
        ));
    }
    env.write("mail/archive.mbox", mbox);
    let mut child = env.cmd().args(["index", "--commit-every", "8", "mail"]).stderr(Stdio::null()).spawn().unwrap();
    // Several slices of messages are committed while the mailbox is still
    // being embedded, then the run is killed.
    kill_after_versions(&mut child, &env.index_dir("default").join("chunks.lance"), 8);
    // What the killed first run committed is already searchable.
    let partial = json(&env.ok(&["status", "--json"]).stdout);
    assert!(partial["chunks"].as_u64().unwrap() >= 8, "{partial}");
    assert!(partial["indexed_at"].is_null(), "the run never finished: {partial}");

    // The mailbox is not done, so it is read again, but the messages
    // already embedded are reused rather than embedded again.
    let s = env.index(&["mail"]);
    assert_eq!(s["new"], 1, "{s}");
    let reused = s["reused"].as_u64().unwrap();
    assert!(reused >= 8, "the killed run's slices were lost: {s}");
    assert_eq!(reused + s["chunks"].as_u64().unwrap(), 200, "{s}");
    let status = json(&env.ok(&["status", "--json"]).stdout);
    assert_eq!(status["chunks"], 200, "duplicate or missing chunks after the kill: {status}");
}

/// A PDF of one real page whose page tree claims a million.
fn million_page_pdf() -> Vec<u8> {
    let stream = "BT /F1 12 Tf 72 720 Td (The lighthouse ledger lists every keeper.) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >> stream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj {o} endobj\n", i + 1).bytes());
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for o in offsets {
        pdf.extend(format!("{o:010} 00000 n \n").bytes());
    }
    pdf.extend(format!("trailer << /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).bytes());
    pdf
}

/// A DOCX whose document inflates to 100 MB of one letter (100 kB stored).
fn zip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflate = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("[Content_Types].xml", deflate).unwrap();
    zip.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
    zip.start_file("word/document.xml", deflate.large_file(true)).unwrap();
    zip.write_all(b"<w:document><w:body><w:p><w:r><w:t>").unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..100 {
        zip.write_all(&block).unwrap();
    }
    zip.write_all(b"</w:t></w:r></w:p></w:body></w:document>").unwrap();
    zip.finish().unwrap().into_inner()
}

/// Runs `ask ARGS` and fails the test if it has not ended within `limit`
/// (a hang is a failure to report, not a test that never ends).
fn run_within(env: &Env, args: &[&str], limit: std::time::Duration) -> std::process::Output {
    let child = env.cmd().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("ask {args:?} did not end within {limit:?}");
        }
    }
}

#[test]
fn hostile_inputs_are_refused_or_indexed_and_never_hang() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    env.write("h/bomb.docx", zip_bomb());
    env.write("h/million.pdf", million_page_pdf());
    // Deeper than the HTML parser is handed (ask flattens past 512).
    let depth = 100_000;
    env.write("h/nested.html", format!("<html><body>{}The heron nests under the old mill.{}</body></html>", "<div>".repeat(depth), "</div>".repeat(depth)));
    // A name with a newline and a byte that is not UTF-8.
    let odd = env.path("h").join(std::ffi::OsStr::from_bytes(b"odd\nname\xff.txt"));
    std::fs::write(&odd, "The otter's den is behind the boathouse.").unwrap();
    // Not regular files: reading them would block (a FIFO) or never end
    // (/dev/zero), even when links are followed.
    assert!(std::process::Command::new("mkfifo").arg(env.path("h/pipe.txt")).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/zero", env.path("h/zero.txt")).unwrap();
    let limit = std::time::Duration::from_secs(120);
    let out = run_within(&env, &["index", "--json", "--follow", "h"], limit);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err.lines().find(|l| l.contains("bomb.docx")).unwrap_or_else(|| panic!("the bomb is not reported:\n{err}"));
    assert!(line.contains("inflates"), "{line}");
    let s = json(&out.stdout);
    assert_eq!((s["new"].as_u64(), s["failed"].as_u64()), (Some(3), Some(1)), "{s}\n{err}");
    assert_eq!(file_name(&env.search("lighthouse ledger keeper", 1)[0]), "million.pdf");
    assert_eq!(file_name(&env.search("heron nests old mill", 1)[0]), "nested.html");
    let hit = &env.search("otter den boathouse", 1)[0];
    assert!(hit["path"].as_str().unwrap().contains("odd\nname"), "{hit}");
    // The odd name is the same file on the next run, not a new one.
    let again = json(&run_within(&env, &["index", "--json", "--follow", "h"], limit).stdout);
    assert_eq!((again["new"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(4)), "{again}");
}

/// A folder of 100,000 entries: every one is recorded, the few with text
/// are found, an unchanged re-run reads none of them, and one removed
/// among them is noticed.
#[test]
fn a_folder_of_100000_entries_is_indexed_and_kept() {
    let env = Env::new();
    let dir = env.path("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..100_000 {
        // One in a thousand has text; the rest are empty, which costs the
        // walk and the file records what real files would, but no encoder.
        let text = if i % 1000 == 0 { format!("Ledger page {i} lists the cormorant count.\n") } else { String::new() };
        std::fs::write(dir.join(format!("n{i:06}.txt")), text).unwrap();
    }
    let limit = std::time::Duration::from_secs(300);
    let first = run_within(&env, &["index", "--json", "many"], limit);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let s = json(&first.stdout);
    assert_eq!((s["new"].as_u64(), s["failed"].as_u64(), s["chunks"].as_u64()), (Some(100_000), Some(0), Some(100)), "{s}");
    let hits = env.search("ledger page 42000 cormorant", 100);
    assert_eq!(hits.len(), 100, "every file with text is found");
    std::fs::remove_file(dir.join("n042000.txt")).unwrap();
    let again = json(&run_within(&env, &["index", "--json", "many"], limit).stdout);
    assert_eq!((again["unchanged"].as_u64(), again["removed"].as_u64(), again["new"].as_u64()), (Some(99_999), Some(1), Some(0)), "{again}");
    assert!(env.search("ledger page 42000 cormorant", 100).iter().all(|h| !h["path"].as_str().unwrap().ends_with("n042000.txt")));
}

/// One mutation of `bytes`: bytes flipped, a truncation, a range of
/// another fixture spliced in, a range repeated, or a range zeroed.
fn mutate(bytes: &[u8], other: &[u8], rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let n = b.len().max(1);
    match rng.usize(..5) {
        0 => {
            for _ in 0..1 + rng.usize(..16) {
                let i = rng.usize(..n.max(1));
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.usize(..8);
                }
            }
        }
        1 => b.truncate(rng.usize(..n.max(1))),
        2 => {
            let (from, len) = (rng.usize(..other.len().max(1)), rng.usize(..4096));
            let piece = &other[from..(from + len).min(other.len())];
            let at = rng.usize(..n.max(1)).min(b.len());
            b.splice(at..at, piece.iter().copied());
        }
        3 => {
            let from = rng.usize(..n.max(1)).min(b.len());
            let to = (from + rng.usize(..4096)).min(b.len());
            let piece = b[from..to].to_vec();
            for _ in 0..1 + rng.usize(..50) {
                b.splice(to..to, piece.iter().copied());
            }
        }
        _ => {
            let from = rng.usize(..n.max(1)).min(b.len());
            let to = (from + rng.usize(..512)).min(b.len());
            b[from..to].fill(0);
        }
    }
    b
}

/// Mutated copies of every fixture format (PDF, DOCX, ODT, EPUB, HTML,
/// mbox, eml, Markdown, text) go through the real binary: no crash, no
/// hang, every file indexed or reported as failed, and the index still
/// opens and answers. `ASK_FUZZ_SEED` and `ASK_FUZZ_CASES` (mutations per
/// fixture) make the long runs of `benches/fuzz-extractors`.
#[test]
fn mutated_documents_of_every_format_never_crash_or_hang() {
    let seed: u64 = std::env::var("ASK_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cases: usize = std::env::var("ASK_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let sources = [
        "docs/garden-report.pdf",
        "docs/lighthouse.html",
        "docs/sourdough.txt",
        "docs/tenancy-notes.md",
        "mail/inbox.mbox",
        "mail/reunion.eml",
        "mail-intl/de-spam-scores.eml",
        "office/boiler-manual.docx",
        "office/boiler-manual.odt",
        "office/boiler-manual.epub",
        "bad/truncated.pdf",
    ];
    let originals: Vec<Vec<u8>> = sources.iter().map(|s| std::fs::read(fixtures().join(s)).unwrap()).collect();
    let env = Env::new();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut written = 0;
    for (i, (source, bytes)) in sources.iter().zip(&originals).enumerate() {
        let name = Path::new(source).file_name().unwrap().to_str().unwrap();
        for case in 0..cases {
            let other = &originals[(i + 1 + rng.usize(..(sources.len() - 1).max(1))) % sources.len()];
            env.write(&format!("fuzz/{case:03}-{name}"), mutate(bytes, other, &mut rng));
            written += 1;
        }
    }
    env.write("fuzz/zz-control.txt", "The kestrel hovers over the railway cutting.");
    written += 1;
    let limit = std::time::Duration::from_secs(240);
    let out = run_within(&env, &["index", "--json", "fuzz"], limit);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "seed {seed}: {err}");
    assert!(!err.contains("panicked"), "seed {seed}: {err}");
    let s = json(&out.stdout);
    let seen = ["new", "failed", "skipped"].iter().map(|k| s[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(seen, written as u64, "seed {seed}: every file indexed, failed or skipped: {s}");
    assert_eq!(file_name(&env.search("kestrel railway cutting", 1)[0]), "zz-control.txt");
    env.ok(&["status"]);
}

#[test]
fn a_damaged_index_is_named_and_rebuilt_with_rebuild() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    // Flip bytes in every data file of the chunks table, as a failing disk might.
    let data = env.index_dir("default").join("chunks.lance/data");
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        for b in bytes.iter_mut().skip(64).step_by(7) {
            *b ^= 0xff;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    let out = env.run(&["search", "security deposit"]);
    assert_eq!(out.status.code(), Some(1), "a damaged index is an error: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&env.index_dir("default").display().to_string()) && err.contains("--rebuild"), "{err}");
    let s = env.index(&["--rebuild", "docs"]);
    assert_eq!(s["new"], 5, "every file is indexed anew: {s}");
    assert_eq!(file_name(&env.search("security deposit", 1)[0]), "tenancy-notes.md");
    // A rebuild with another encoder is how an index changes encoder.
    let mpnet = models_dir().join("all-mpnet-base-v2");
    if mpnet.join("config.json").is_file() {
        let out = env.run(&["index", "--embed-model", mpnet.to_str().unwrap(), "docs"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("--rebuild"), "{}", stderr(&out));
        let s = json(&env.ok(&["index", "--json", "--rebuild", "--embed-model", mpnet.to_str().unwrap(), "docs"]).stdout);
        assert_eq!(s["new"], 5, "{s}");
        let status = json(&env.ok(&["status", "--json", "--embed-model", mpnet.to_str().unwrap()]).stdout);
        assert_eq!(status["encoder"]["name"].as_str().or(status["encoder"].as_str()), Some("all-mpnet-base-v2"), "{status}");
    }
}

/// Sixty files of text nobody would write twice, each holding a word of its
/// own (`tokenN`) to look it up by.
fn distinct_files(env: &Env, dir: &str) {
    let words = ["harbour", "boiler", "ledger", "copper", "meadow", "violet", "quarry", "lantern", "orchard", "pewter", "saddle", "kettle"];
    let mut seed = 7u64;
    for i in 0..60 {
        let mut text = format!("token{i}");
        for _ in 0..100 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            text.push_str(&format!(" {}{}", words[(seed >> 33) as usize % words.len()], (seed >> 40) % 100));
        }
        env.write(&format!("{dir}/{i}.txt"), text + "\n");
    }
}

/// A disk that fills up during `ask index` (a tmpfs of a few hundred KB in
/// a mount namespace of its own, under the index): the run fails saying so
/// once, search keeps working on what was committed, and once there is
/// room the next run completes the index to what a run on an ample disk
/// makes. Several sizes, so the disk fills at different steps of the run.
#[test]
fn a_full_disk_fails_the_run_cleanly_and_the_next_run_completes_it() {
    let reference = Env::new();
    reference.copy_docs();
    distinct_files(&reference, "more");
    reference.index(&["docs", "more"]);
    let want = json(&reference.ok(&["status", "--json"]).stdout);

    for size in ["150k", "220k", "260k"] {
        let env = Env::new();
        env.copy_docs();
        distinct_files(&env, "more");
        std::fs::create_dir_all(&env.home).unwrap();
        let logs = env.path("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let script = format!(
            r#"set -u
mount -t tmpfs -o size={size} tmpfs "$ASK_HOME" || exit 90
"$ASK" index docs 2>"$LOGS/first.err"; echo "first=$?"
"$ASK" index more 2>"$LOGS/full.err"; echo "full=$?"
"$ASK" search --json --mode bm25 kiln -k 1 >"$LOGS/search.out" 2>&1; echo "search=$?"
mount -o remount,size=50m "$ASK_HOME"
"$ASK" index docs more 2>"$LOGS/rerun.err"; echo "rerun=$?"
"$ASK" status --json >"$LOGS/status.out"
for i in 0 59; do "$ASK" search --json --mode bm25 token$i -k 1 >"$LOGS/token$i.out"; done
"#
        );
        let mut cmd = env.command("unshare");
        cmd.args(["-m", "bash", "-c", &script]).env("ASK", ASK).env("LOGS", &logs);
        let out = cmd.output().expect("unshare is installed (util-linux)");
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
        assert!(out.status.code() != Some(90), "cannot mount a tmpfs here: {}", stderr(&out));
        assert!(said.contains("first=0"), "{size}: {said} {}", read("first.err"));
        assert!(said.contains("full=1"), "{size}: the run that fills the disk fails: {said}");
        let full = read("full.err");
        assert_eq!(full.matches("No space left on device").count(), 1, "{size}: said once: {full}");
        assert!(full.contains("free some space"), "{size}: {full}");
        assert!(said.contains("search=0"), "{size}: search works on a full disk: {}", read("search.out"));
        assert_eq!(file_name(&json(read("search.out").as_bytes())), "tenancy-notes.md");
        assert!(said.contains("rerun=0"), "{size}: {}", read("rerun.err"));
        let got = json(read("status.out").as_bytes());
        assert_eq!((&got["files"], &got["chunks"], &got["failed"]), (&want["files"], &want["chunks"], &want["failed"]), "{size}: {got}");
        for i in [0, 59] {
            let hit = json(read(&format!("token{i}.out")).lines().next().unwrap_or("null").as_bytes());
            assert_eq!(file_name(&hit), format!("{i}.txt"), "{size}: token{i}");
        }
    }
}

/// A file rewritten in place (same size, new text) again and again while
/// `ask index` runs: once the writes stop, the next run holds the last
/// text, and the run after it finds nothing to do. A recorded mtime newer
/// than the text read would make the file pass for unchanged, stale.
#[test]
fn a_file_rewritten_while_it_is_indexed_ends_up_current() {
    use std::io::{Seek, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let env = Env::new();
    env.copy_docs();
    let live = env.write("docs/live.txt", format!("marker{:06} the live file\n", 0));
    let (stop, last) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut file = std::fs::OpenOptions::new().write(true).open(&live).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                file.seek(std::io::SeekFrom::Start(0)).unwrap();
                file.write_all(format!("marker{:06} the live file\n", n % 1_000_000).as_bytes()).unwrap();
                last.store(n % 1_000_000, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        env.index(&["docs"]);
        env.index(&["docs"]);
        stop.store(true, Ordering::SeqCst);
    });
    let n = last.load(Ordering::SeqCst);
    assert!(n > 10, "the file was rewritten during the runs ({n} times)");
    env.index(&["docs"]);
    let hits = env.ok(&["search", "--json", "--mode", "bm25", &format!("marker{n:06}"), "-k", "1"]);
    let hits = json_lines(&hits.stdout);
    assert_eq!(hits.first().map(file_name).as_deref(), Some("live.txt"), "the last text is indexed: {hits:?}");
    let again = env.index(&["docs"]);
    assert_eq!((again["new"].as_u64(), again["changed"].as_u64()), (Some(0), Some(0)), "{again}");
}

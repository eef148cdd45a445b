//! Mail as a first-class source (issue 5): mbox, Maildir and .eml, each
//! message its own document with its headers, sender and date filters, and
//! re-indexing that embeds only what is new.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

/// `ask search QUERY --json ARGS...`, parsed.
fn search(env: &Env, query: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search", query, "--json"];
    all.extend_from_slice(args);
    json_lines(&env.ok(&all).stdout)
}

fn copy_mail(env: &Env, name: &str, to: &str) -> std::path::PathBuf {
    env.write(to, std::fs::read(fixtures().join("mail").join(name)).unwrap())
}

#[test]
fn each_message_of_an_mbox_is_found_with_its_headers() {
    let env = Env::new();
    copy_mail(&env, "inbox.mbox", "mail/inbox.mbox");
    let summary = env.index(&["mail"]);
    assert_eq!((summary["new"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(0)), "{summary}");

    // Latin-1 encoded-word subject, UTF-8 encoded-word sender, a
    // quoted-printable ISO-8859-1 body.
    let hit = &search(&env, "what door code does the boiler technician need", &["-k", "1"])[0];
    assert!(hit["path"].as_str().unwrap().ends_with("mail/inbox.mbox"), "{hit}");
    assert_eq!(hit["kind"], "mail");
    assert_eq!(hit["subject"], "Réunion: boiler service à Zürich");
    assert_eq!(hit["from"], "Zoë Müller <zoe@example.org>");
    assert_eq!(hit["to"], "Household <house@example.org>");
    assert_eq!(hit["date"], "2024-03-05T14:30:00+01:00");
    assert_eq!(hit["message_id"], "reunion-2024-03-05@example.org");
    assert_eq!(hit["message"], "reunion-2024-03-05@example.org");
    assert!(hit["text"].as_str().unwrap().contains("café on Zürichstraße"), "{hit}");

    // An HTML-only message is read as text.
    let hit = &search(&env, "how many apples did the orchard harvest", &["-k", "1"])[0];
    assert_eq!(hit["subject"], "Orchard newsletter — harvest report");
    let text = hit["text"].as_str().unwrap();
    assert!(text.contains("340 kilograms") && !text.contains("<b>"), "{text}");

    // Windows-1252, not UTF-8: the euro sign and the curly apostrophe survive.
    let hit = &search(&env, "burst pipe plumber bill", &["-k", "1"])[0];
    assert_eq!(hit["from"], "Carol Nguyen <carol@example.org>");
    assert!(hit["text"].as_str().unwrap().contains("plumber’s invoice for the burst pipe is 180 €"), "{hit}");

    // Attachments that are documents are part of their message: a PDF...
    let hit = &search(&env, "money approved for watering the raised beds", &["-k", "1"])[0];
    assert_eq!(hit["subject"], "Committee report attached");
    assert!(hit["text"].as_str().unwrap().contains("3,400 dollars"), "{hit}");
    // ...and a text file; the PNG is skipped.
    let hit = &search(&env, "the shed roof leaks", &["-k", "1"])[0];
    assert_eq!(hit["subject"], "Committee report attached");
    for hit in search(&env, "photo png image", &["-k", "10"]) {
        assert!(!hit["text"].as_str().unwrap().contains("PNG"), "{hit}");
    }

    // People see subject, sender and date rather than a bare path.
    let out = String::from_utf8(env.ok(&["search", "boiler door code", "-k", "1"]).stdout).unwrap();
    assert!(out.contains("\"Réunion: boiler service à Zürich\" from Zoë Müller <zoe@example.org>, 2024-03-05 14:30"), "{out}");
    assert!(out.contains("inbox.mbox <reunion-2024-03-05@example.org>"), "{out}");
}

#[test]
fn sender_and_date_filters_use_the_message_headers() {
    let env = Env::new();
    copy_mail(&env, "inbox.mbox", "mail/inbox.mbox");
    env.write("notes/boiler.txt", "Our boiler needs a service every autumn; the door code is in the drawer.");
    env.index(&["mail", "notes"]);

    let zoe = search(&env, "boiler service", &["-k", "10", "--from", "ZOË"]);
    assert!(!zoe.is_empty());
    assert!(zoe.iter().all(|h| h["from"] == "Zoë Müller <zoe@example.org>"), "{zoe:?}");
    let by_address = search(&env, "boiler service", &["-k", "10", "--from", "carol@example"]);
    assert!(!by_address.is_empty() && by_address.iter().all(|h| h["from"] == "Carol Nguyen <carol@example.org>"));

    // The file's mtime is today; the messages were sent in 2024. Dates
    // filter on the message's date, inside the search: -k 10 returns the
    // one message sent in March, not ten hits thinned to none.
    let march = search(&env, "boiler service", &["-k", "10", "--since", "2024-03-01", "--until", "2024-03-31"]);
    let subjects: Vec<&str> = march.iter().map(|h| h["subject"].as_str().unwrap()).collect();
    assert!(!subjects.is_empty() && subjects.iter().all(|s| *s == "Réunion: boiler service à Zürich"), "{subjects:?}");
    let before_2025 = search(&env, "boiler", &["-k", "10", "--until", "2025-01-01"]);
    assert!(before_2025.iter().all(|h| h["kind"] == "mail"), "the note is from today: {before_2025:?}");
    let mut subjects: Vec<&str> = before_2025.iter().map(|h| h["subject"].as_str().unwrap()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 4, "all four messages: {before_2025:?}");
}

#[test]
fn a_grown_mbox_embeds_only_the_new_message() {
    let env = Env::new();
    let mbox = copy_mail(&env, "inbox.mbox", "mail/inbox.mbox");
    let first = env.index(&["mail"]);
    let before = first["chunks"].as_u64().unwrap();
    assert!(before >= 4, "{first}");

    // Append a message the way a mail client does: a From_ line, the
    // message, a blank line.
    let mut grown = std::fs::read(&mbox).unwrap();
    grown.extend_from_slice(b"From zoe@example.org Fri Apr 26 11:00:00 2024\n");
    grown.extend_from_slice(&std::fs::read(fixtures().join("mail/appended.eml")).unwrap());
    grown.extend_from_slice(b"\n");
    std::fs::write(&mbox, grown).unwrap();

    let second = env.index(&["mail"]);
    assert_eq!(second["changed"], 1, "{second}");
    assert_eq!(second["chunks"], 1, "only the new message is embedded: {second}");
    assert_eq!(second["reused"].as_u64(), Some(before), "{second}");
    let hit = &search(&env, "when does the chimney sweep come", &["-k", "1"])[0];
    assert_eq!(hit["subject"], "Chimney sweep");
    // Earlier messages are still found, with their headers.
    let hit = &search(&env, "orchard apple harvest", &["-k", "1"])[0];
    assert_eq!(hit["subject"], "Orchard newsletter — harvest report");
    assert_eq!(search(&env, "boiler", &["-k", "20", "--type", "mail"]).len() as u64, before + 1);
}

#[test]
fn maildir_messages_are_indexed_and_a_move_to_cur_is_not_reembedded() {
    let env = Env::new();
    for slot in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.path(&format!("Maildir/{slot}"))).unwrap();
        std::fs::create_dir_all(env.path(&format!("Maildir/.Sent/{slot}"))).unwrap();
    }
    let new = copy_mail(&env, "reunion.eml", "Maildir/new/1709645400.M1P1.laptop");
    // A delivery still being written is never indexed.
    copy_mail(&env, "appended.eml", "Maildir/tmp/1714122000.M2P2.laptop");
    let first = env.index(&["Maildir"]);
    assert_eq!(first["new"], 1, "{first}");
    assert!(first["chunks"].as_u64().unwrap() >= 1);
    assert!(search(&env, "chimney sweep", &["-k", "5"]).iter().all(|h| !h["path"].as_str().unwrap().contains("/Maildir/tmp/")));

    // The mail client reads it: new/NAME becomes cur/NAME:2,S.
    let cur = env.path("Maildir/cur/1709645400.M1P1.laptop:2,S");
    std::fs::rename(&new, &cur).unwrap();
    let second = env.index(&["Maildir"]);
    assert_eq!((second["new"].as_u64(), second["removed"].as_u64()), (Some(1), Some(1)), "{second}");
    assert_eq!(second["chunks"], 0, "a moved message is not embedded again: {second}");
    assert_eq!(second["reused"], first["chunks"], "{second}");
    let hit = &search(&env, "boiler door code", &["-k", "1"])[0];
    assert_eq!(Path::new(hit["path"].as_str().unwrap()), cur);
    assert_eq!(hit["subject"], "Réunion: boiler service à Zürich");

    // A Maildir++ subfolder is indexed with its Maildir, although its name
    // is hidden.
    let sent = copy_mail(&env, "appended.eml", "Maildir/.Sent/cur/1714122001.M3P3.laptop:2,S");
    let third = env.index(&["Maildir"]);
    assert_eq!(third["new"], 1, "{third}");
    let hit = &search(&env, "chimney sweep", &["-k", "1"])[0];
    assert_eq!(Path::new(hit["path"].as_str().unwrap()), sent);
}

#[test]
fn a_single_eml_file_is_one_message() {
    let env = Env::new();
    copy_mail(&env, "reunion.eml", "saved/reunion.eml");
    env.index(&["saved"]);
    let hit = &search(&env, "boiler technician", &["-k", "1"])[0];
    assert_eq!(hit["message_id"], "reunion-2024-03-05@example.org");
    assert_eq!(hit["from"], "Zoë Müller <zoe@example.org>");
}

#[test]
fn summarize_chooses_messages_by_sender_and_date() {
    let env = Env::new();
    let mbox = copy_mail(&env, "inbox.mbox", "inbox.mbox");
    let mbox = mbox.to_str().unwrap();
    let out = env.ok(&["summarize", "--json", "--max-tokens", "24", "--from", "carol", mbox]);
    let v = json(&out.stdout);
    assert_eq!(v["messages"], 1, "{v}");
    assert!(!v["summary"].as_str().unwrap().is_empty(), "{v}");
    // A few messages: a digest, each summary attributed from the headers.
    let out = env.ok(&["summarize", "--json", "--max-tokens", "24", "--since", "2024-02-01", "--until", "2024-03-31", mbox]);
    let v = json(&out.stdout);
    assert_eq!(v["messages"], 2);
    let senders: Vec<&str> = v["digest"].as_array().unwrap().iter().map(|m| m["from"].as_str().unwrap()).collect();
    assert_eq!(senders, ["Bob Okafor <bob@example.org>", "Zoë Müller <zoe@example.org>"], "{v}");
    assert!(v["digest"].as_array().unwrap().iter().all(|m| !m["summary"].as_str().unwrap().is_empty()), "{v}");
    assert!(!v["summary"].as_str().unwrap().is_empty(), "{v}");
    let out = env.ok(&["summarize", "--max-tokens", "24", "--since", "2024-02-01", "--until", "2024-03-31", mbox]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("- Bob Okafor <bob@example.org>, 2024-02-20 18:05, \"Committee report attached\": "), "{text}");
    assert!(text.contains("\n- Zoë Müller <zoe@example.org>, 2024-03-05 14:30, \"Réunion: boiler service à Zürich\": "), "{text}");

    // A mail client piping one message in.
    let eml = std::fs::read(fixtures().join("mail/reunion.eml")).unwrap();
    let out = env.run_with_stdin(&["summarize", "--json", "--max-tokens", "24", "-"], &eml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out.stdout)["messages"], 1);

    let out = env.run(&["summarize", "--from", "nobody", mbox]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("none of its 4 messages"), "{}", stderr(&out));
    env.write("plain.txt", "Just some notes.");
    let out = env.run(&["summarize", "--from", "carol", "plain.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not mail"), "{}", stderr(&out));
}

//! The planner's rounds, with a fake model whose tokens are words.

use ask_ingest::{Document, Kind, Mail};

use super::*;

/// A model whose tokens are whitespace-separated words and whose every
/// reply is `reply_words` words (at most what it is allowed).
struct Fake {
    context: usize,
    reply_words: usize,
    /// Stop after this many replies.
    stop_after: Option<usize>,
    /// (user message, max tokens) of every reply.
    asked: Vec<(String, usize)>,
}

fn fake(context: usize, reply_words: usize) -> Fake {
    Fake { context, reply_words, stop_after: None, asked: Vec::new() }
}

impl Model for Fake {
    fn context_length(&self) -> usize {
        self.context
    }

    fn count_tokens(&self, text: &str) -> Result<usize, SummarizeError> {
        Ok(text.split_whitespace().count())
    }

    fn split(&self, _: Kind, doc: &Document, max_tokens: usize) -> Result<Vec<String>, SummarizeError> {
        let words: Vec<&str> = doc.sections.iter().flat_map(|s| s.text.split_whitespace()).collect();
        Ok(words.chunks(max_tokens).map(|c| c.join(" ")).collect())
    }

    fn reply(&mut self, user: &str, max_tokens: usize, out: &mut dyn FnMut(&str) -> std::io::Result<()>) -> Result<String, SummarizeError> {
        self.asked.push((user.to_owned(), max_tokens));
        let words = vec!["gist"; self.reply_words.min(max_tokens)];
        for w in &words {
            out(&format!("{w} ")).map_err(StreamError::Write)?;
        }
        Ok(words.join(" "))
    }

    fn stopped(&self) -> bool {
        self.stop_after.is_some_and(|n| self.asked.len() >= n)
    }
}

fn words(n: usize) -> Document {
    Document::plain((0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" "), false)
}

fn message(from: &str, subject: &str, body: &str) -> Document {
    let mail = Mail {
        from: Some(from.into()),
        subject: Some(subject.into()),
        date_rfc3339: Some("2024-03-05T14:30:00+01:00".into()),
        ..Default::default()
    };
    Document { mail: Some(mail), ..Document::plain(body.into(), false) }
}

/// Runs the planner, collecting what it reports.
fn run(model: &mut Fake, kind: Kind, docs: &[Document], max_tokens: usize) -> (Outcome, Vec<String>, String) {
    let mut rounds = Vec::new();
    let mut streamed = String::new();
    let outcome = summarize(model, kind, docs, max_tokens, &mut |step| {
        match step {
            Step::Round { what, total } => rounds.push(format!("{total} {what}")),
            Step::Text(t) => streamed.push_str(t),
            Step::Done | Step::Heading(_) | Step::Final(_) => {}
        }
        Ok(())
    })
    .unwrap();
    (outcome, rounds, streamed)
}

#[test]
fn budgets_leave_room_for_the_answer_and_shrink_every_round() {
    // 8192 - 160 - 512 = 7520, held to 1536; a quarter of that is over 200.
    assert_eq!(Budget::new(8192, 512), Budget { piece_tokens: 1536, summary_tokens: 200, final_tokens: 512 });
    // 2048 - 160 - 512 = 1376.
    assert_eq!(Budget::new(2048, 512), Budget { piece_tokens: 1376, summary_tokens: 200, final_tokens: 512 });
    // The final summary gets at most half the context: 256; 512 - 160 - 256 = 96, a quarter is 24.
    assert_eq!(Budget::new(512, 512), Budget { piece_tokens: 96, summary_tokens: 24, final_tokens: 256 });
    // A tiny context still makes pieces of 64 and summaries of 16.
    assert_eq!(Budget::new(256, 512), Budget { piece_tokens: 64, summary_tokens: 16, final_tokens: 128 });
}

#[test]
fn text_that_fits_is_summarized_in_one_streamed_pass() {
    let mut model = fake(2048, 5);
    let (out, rounds, streamed) = run(&mut model, Kind::Text, &[words(300)], 512);
    assert_eq!(model.asked.len(), 1);
    assert!(model.asked[0].0.starts_with("Text:\n\nw0 w1"), "{}", model.asked[0].0);
    assert_eq!(model.asked[0].1, 512);
    assert!(rounds.is_empty());
    assert_eq!((out.pieces, out.summary.as_str()), (1, "gist gist gist gist gist"));
    assert_eq!(streamed.trim(), out.summary);
}

#[test]
fn long_text_is_summarized_piece_by_piece_then_combined() {
    let mut model = fake(2048, 10);
    // 3000 words in pieces of 1376: 1376, 1376, 248.
    let (out, rounds, _) = run(&mut model, Kind::Text, &[words(3000)], 512);
    assert_eq!(rounds, ["3 pieces"]);
    assert_eq!(out.pieces, 3);
    assert_eq!(model.asked.len(), 4);
    assert!(model.asked[1].0.starts_with("This is part 2 of 3 of a longer text:\n\nw1376 "), "{}", model.asked[1].0);
    assert_eq!(model.asked[1].1, 200);
    let last = &model.asked[3].0;
    assert!(last.starts_with("These are summaries of the consecutive parts") && last.contains("- gist"), "{last}");
}

#[test]
fn a_small_context_and_a_wordy_model_still_end() {
    // Pieces of 96, summaries of 24: every summary is as long as allowed.
    let mut model = fake(512, usize::MAX);
    let (out, rounds, _) = run(&mut model, Kind::Text, &[words(1000)], 512);
    // 1000 words: 11 pieces; their 11 lines of 25 words ("-" and 24) are
    // 275 words: 3 pieces; 3 lines are 75 words, which fit.
    assert_eq!(rounds, ["11 pieces", "3 pieces"]);
    assert_eq!(out.pieces, 11);
    assert_eq!(model.asked.len(), 11 + 3 + 1);
    assert_eq!(model.asked.last().unwrap().1, 256);
}

#[test]
fn a_few_messages_are_summarized_one_by_one_under_their_headers() {
    let mut model = fake(2048, 3);
    let docs =
        [message("Zoë <z@x>", "Crane", "The crane arrives Monday."), message("Bob <b@x>", "Re: Crane", "Tuesday is better.")];
    let mut finals = Vec::new();
    let outcome = summarize(&mut model, Kind::Mail, &docs, 512, &mut |step| {
        if let Step::Final(digest) = step {
            finals.push(digest.to_vec());
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(model.asked.len(), 3);
    assert!(model.asked[0].0.starts_with("E-mail:\n\nThe crane arrives Monday."), "{}", model.asked[0].0);
    assert_eq!(outcome.pieces, 2);
    assert_eq!(outcome.digest[0].line(), "- Zoë <z@x>, 2024-03-05 14:30, \"Crane\": gist gist gist");
    assert_eq!(finals, vec![outcome.digest.clone()]);
    let last = &model.asked[2].0;
    assert!(last.starts_with("These are summaries of e-mails") && last.contains("- Bob <b@x>, 2024-03-05 14:30, \"Re: Crane\": gist"), "{last}");
    assert!(last.contains("Say who wrote what"), "{last}");
}

#[test]
fn one_message_is_headed_by_its_sender_and_date() {
    let mut model = fake(2048, 3);
    let docs = [message("Zoë <z@x>", "Crane", "The crane arrives Monday.")];
    let mut headings = Vec::new();
    let outcome = summarize(&mut model, Kind::Mail, &docs, 512, &mut |step| {
        if let Step::Heading(h) = step {
            headings.push(h.line());
        }
        Ok(())
    })
    .unwrap();
    // One pass, asked as an e-mail, and no digest of one line.
    assert_eq!(model.asked.len(), 1);
    assert!(model.asked[0].0.starts_with("E-mail:\n\nThe crane arrives Monday."), "{}", model.asked[0].0);
    assert!(model.asked[0].0.contains("Say who wrote what"), "{}", model.asked[0].0);
    assert!(outcome.digest.is_empty());
    assert_eq!(headings, ["Zoë <z@x>, 2024-03-05 14:30, \"Crane\""]);
    assert_eq!(outcome.message.unwrap().from.as_deref(), Some("Zoë <z@x>"));
    // Not mail: no heading.
    let outcome = summarize(&mut fake(2048, 3), Kind::Text, &[words(10)], 512, &mut |_| Ok(())).unwrap();
    assert!(outcome.message.is_none());
}

#[test]
fn a_stop_keeps_what_was_done_and_skips_the_final_summary() {
    let mut model = fake(2048, 10);
    model.stop_after = Some(1);
    let (out, rounds, streamed) = run(&mut model, Kind::Text, &[words(3000)], 512);
    assert_eq!(rounds, ["3 pieces"]);
    assert_eq!(model.asked.len(), 1, "no piece after the stop, and no final summary");
    assert!(out.summary.is_empty() && streamed.is_empty());
}

//! The grounded prompt: numbered passages, an instruction, the question;
//! and reading the citations back out of an answer.
//!
//! `ask query` and `ask eval` build their prompts here, so the prompt that
//! is measured is the prompt that is shipped. The layout was chosen by the
//! answer accuracy it reached on the shared msmarco-5k-qa set (docs/design.md,
//! "Answers").

use ask_engine::{Generator, ModelError, Turn};

use crate::conversation::{strip_citations, Exchange};

/// A retrieved passage as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// Where it comes from, as the model reads it (a file name and lines).
    pub heading: String,
    /// Its text.
    pub text: String,
}

/// The system message carries the rules; the user message holds only the
/// numbered passages and the question. Of the layouts and wordings tried
/// on msmarco-5k-qa (docs/design.md, "Answers") this one was the most accurate with
/// the default model: asking for the passages' own names, numbers and
/// terms turned vague answers ("an infection") into the ones the passages
/// give ("appendicitis"), and asking for their own words kept answers
/// from paraphrasing the gold string away ("liquid below -259.2 °F" for
/// "33 Kelvin"), over the three kernel paths' runs.
pub const SYSTEM: &str = "You answer questions from the user's documents. Use only the numbered passages \
you are given. Answer in one to three sentences and cite the passage that supports each sentence by its \
number in brackets, like [2]. Use the specific names, numbers, dates and terms the passages give, in the passages' own words. If the \
passages do not contain the answer, say that they do not.";

/// The system message of [`Layout::Quote`]: [`SYSTEM`]'s rules, with the
/// supporting sentence quoted before the answer.
pub const SYSTEM_QUOTE: &str = "You answer questions from the user's documents. Use only the numbered passages \
you are given. First quote, in double quotes, the one sentence of the passages that answers the question, with its \
passage number in brackets, like [2]; then answer in one or two sentences, citing that passage the same way. Use the \
specific names, numbers, dates and terms the passages give, in the passages' own words. If the passages do not contain \
the answer, say that they do not.";

/// How the prompt lays out the passages and the question. Passages keep
/// their numbers (rank order) in every layout, so `[n]` names the same
/// source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    /// The passages, best first, then the question.
    #[default]
    Plain,
    /// The question, the passages, then the question again.
    Restate,
    /// The passages from the lowest ranked to the best, then the question:
    /// the best passage nearest the question.
    BestLast,
    /// As `Plain`, with a system message that asks for the sentence that
    /// answers, quoted, before the answer ([`SYSTEM_QUOTE`]).
    Quote,
}

impl Layout {
    /// Every layout, by its name.
    pub const ALL: [(&'static str, Layout); 4] =
        [("plain", Layout::Plain), ("restate", Layout::Restate), ("best-last", Layout::BestLast), ("quote", Layout::Quote)];

    /// The system message.
    pub fn system(self) -> &'static str {
        match self {
            Layout::Quote => SYSTEM_QUOTE,
            _ => SYSTEM,
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names: Vec<&str> = Layout::ALL.iter().map(|(n, _)| *n).collect();
        Layout::ALL.iter().find(|(n, _)| *n == s).map(|(_, l)| *l).ok_or_else(|| format!("`{s}` is not a layout ({})", names.join(", ")))
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Layout::ALL.iter().find(|(_, l)| l == self).map_or("plain", |(n, _)| n))
    }
}

/// The user message: numbered passages and the question, as `layout` has it.
pub fn user_message(passages: &[Excerpt], question: &str, layout: Layout) -> String {
    let mut out = String::new();
    if layout == Layout::Restate {
        out.push_str(&format!("Question: {question}\n\n"));
    }
    out.push_str("Passages:\n\n");
    let numbered = passages.iter().enumerate().map(|(i, p)| format!("[{}] {}\n{}\n\n", i + 1, p.heading, p.text.trim()));
    let numbered: Vec<String> = if layout == Layout::BestLast { numbered.rev().collect() } else { numbered.collect() };
    out.push_str(&numbered.concat());
    out.push_str(&format!("Question: {question}"));
    out
}

/// What every prompt [`fit`] makes for `model` in `layout` begins with: the
/// chat template's opening, the system message and the user message's
/// first words, for [`Generator::keep_opening`].
pub fn opening(model: &Generator, layout: Layout) -> Result<String, ModelError> {
    opening_after(model, &[], layout)
}

/// What the prompt [`fit`] makes for the next question of a conversation
/// begins with when it keeps all of `history` (its earlier turns, oldest
/// first): [`opening`]'s text with those turns inside, for
/// [`Generator::prefill`] before the question's passages are known. Found
/// as what two such prompts with nothing else in common share.
pub fn opening_after(model: &Generator, history: &[Exchange], layout: Layout) -> Result<String, ModelError> {
    let one = Excerpt { heading: "a".into(), text: "b".into() };
    let a = conversation(model, history, std::slice::from_ref(&one), "c", layout)?;
    let b = conversation(model, history, &[], "d", layout)?;
    let n = a.char_indices().zip(b.chars()).take_while(|((_, x), y)| x == y).last().map_or(0, |((i, x), _)| i + x.len_utf8());
    Ok(a[..n].to_owned())
}

/// The chat prompt for `question` over `passages` after the earlier turns
/// `turns` (oldest first, each as the user asked it and the answer without
/// its passage numbers).
fn conversation(model: &Generator, turns: &[Exchange], passages: &[Excerpt], question: &str, layout: Layout) -> Result<String, ModelError> {
    // A small model reads "it" in the question by the passages' words
    // unless the question itself says what came before.
    let asked = match turns.last() {
        Some(e) => format!("{question} (following up on: {})", e.question.trim()),
        None => question.to_owned(),
    };
    let user = user_message(passages, &asked, layout);
    let answers: Vec<String> = turns.iter().map(|e| strip_citations(&e.answer)).collect();
    let mut messages = vec![Turn { role: "system", content: layout.system() }];
    for (e, answer) in turns.iter().zip(&answers) {
        messages.push(Turn { role: "user", content: &e.question });
        messages.push(Turn { role: "assistant", content: answer });
    }
    messages.push(Turn { role: "user", content: &user });
    model.conversation_prompt(&messages)
}

/// The chat prompt for `question` over as many of `passages` (best first)
/// as fit in the model's context with room for `answer_tokens` (at most
/// half the context), after the earlier turns of its conversation
/// (`history`, oldest first, each as the user asked it and the answer
/// without its passage numbers). What does not fit goes oldest turn first,
/// then the lowest-ranked passage, whole passages only and at least one
/// kept. Returns the prompt and how many passages it holds.
pub fn fit(
    model: &Generator,
    history: &[Exchange],
    passages: &[Excerpt],
    question: &str,
    answer_tokens: usize,
    layout: Layout,
) -> Result<(String, usize), ModelError> {
    let context = model.context_length();
    let budget = context.saturating_sub(answer_tokens.min(context / 2));
    let (mut turns, mut n) = (history.len(), passages.len());
    loop {
        let prompt = conversation(model, &history[history.len() - turns..], &passages[..n], question, layout)?;
        if (turns == 0 && n <= 1) || model.count_tokens(&prompt)? < budget {
            return Ok((prompt, n));
        }
        if turns > 0 {
            turns -= 1;
        } else {
            n -= 1;
        }
    }
}

/// A passage's sentences, in order, as slices of its text: sentence
/// boundaries by Unicode's rules (UAX #29), where a line break ends a
/// sentence only at a blank line, after a Markdown heading (`# …`, or a
/// line underlined with `===` or `---`, which stays with its underline), or
/// before a list item, quote or table row; other line breaks are the
/// wrapping of prose (mail, plain text), which Unicode's rules would
/// otherwise cut. Blank pieces are dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    use unicode_segmentation::UnicodeSegmentation;
    let starts_block = |line: &str| {
        let t = line.trim_start();
        let numbered = t.split_once(['.', ')']).is_some_and(|(n, _)| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()));
        t.is_empty() || numbered || t.starts_with(['-', '*', '+', '#', '|', '>', '•'])
    };
    // The same text with wrapping line breaks made spaces: one byte for
    // one, so the boundaries found in it are boundaries in `text`.
    let lines: Vec<&str> = text.split('\n').collect();
    let mut flat = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        flat.push_str(line);
        if let Some(next) = lines.get(i + 1) {
            let ends_block = line.trim().is_empty() || line.trim_start().starts_with('#') || underline(line) || underline(next) || starts_block(next);
            flat.push(if ends_block { '\n' } else { ' ' });
        }
    }
    let mut out: Vec<&str> = Vec::new();
    // Where the piece being built starts: a list number ("1.", which
    // Unicode's rules end a sentence after) joins the words after it.
    let mut start = 0;
    let mut at = 0;
    for piece in flat.split_sentence_bounds() {
        at += piece.len();
        let s = text[start..at].trim();
        if underline(s) && !out.is_empty() {
            // A Setext heading's underline: the heading, as one piece.
            let last = out.pop().expect("checked");
            let from = last.as_ptr() as usize - text.as_ptr() as usize;
            out.push(text[from..at].trim());
            start = at;
            continue;
        }
        let marker = s.len() <= 4 && !s.chars().any(char::is_alphabetic) && !text[at..].trim().is_empty();
        if !marker {
            if !s.is_empty() {
                out.push(s);
            }
            start = at;
        }
    }
    out
}

/// A Setext heading's underline (or a thematic break): `===` or `---`.
fn underline(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 3 && (t.bytes().all(|b| b == b'=') || t.bytes().all(|b| b == b'-'))
}

/// Whether a sentence of [`sentences`] is a heading: `# …`, a Setext
/// heading, or a line that is all bold (`**…**`, `__…__`), as format
/// specifications name their fields.
fn is_heading(s: &str) -> bool {
    let t = s.trim();
    let bold = |m: &str| t.len() > 2 * m.len() && t.starts_with(m) && t.ends_with(m) && !t[m.len()..t.len() - m.len()].contains(m);
    t.starts_with('#') || t.lines().last().is_some_and(|l| underline(l) && t.contains('\n')) || bold("**") || bold("__")
}

/// The most sentences of a heading's first paragraph kept with it.
const HEADING_BODY: usize = 3;

/// The sentences that give sentence `i` of `ss` its meaning, to keep with
/// it: the heading above it in the passage (a value's label, a section's
/// subject), and for a table row the table's first row (its column names).
/// A heading's own meaning is the paragraph under it (a field's size and
/// value under its name): its first [`HEADING_BODY`] sentences, up to a
/// blank line or the next heading. `text` is the passage `ss` was cut from.
fn context(text: &str, ss: &[&str], i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    if ss[i].starts_with('|') {
        let first = (0..i).rev().take_while(|&j| ss[j].starts_with('|')).last();
        out.extend(first);
    }
    if !is_heading(ss[i]) {
        out.extend((0..i).rev().find(|&j| is_heading(ss[j])));
        return out;
    }
    // Where a sentence starts and ends in `text`: `ss` holds its slices.
    let start = |j: usize| ss[j].as_ptr() as usize - text.as_ptr() as usize;
    let end = |j: usize| start(j) + ss[j].len();
    let body = i + 1..(i + 1 + HEADING_BODY).min(ss.len());
    for j in body {
        // The blank line between the heading and its paragraph is allowed.
        if is_heading(ss[j]) || (j > i + 1 && text[end(j - 1)..start(j)].contains("\n\n")) {
            break;
        }
        out.push(j);
    }
    out
}

/// The default budget of [`select`], in the encoder's tokens, on every
/// surface (`--passage-tokens` of `ask query`, `chat` and `eval`); 0 gives
/// whole passages.
pub const PASSAGE_TOKENS: usize = 0;

/// Where sentences of a passage were left out.
pub const GAP: &str = "…";

/// The passages cut down to the sentences that bear most on the question,
/// `budget` tokens in all (as `tokens` counts them), in their original
/// order and numbering, so that `[n]` still names the passage's source.
///
/// `scores[p][i]` is how well sentence i of `sentences(&passages[p].text)`
/// matches the question. Every passage keeps its best sentence; then, best
/// first, each sentence joins with its context (the heading above it, a
/// table row's column names: a value's label) and the sentences on either
/// side of it (a pronoun's noun, a number's unit), as long as they fit.
/// Left-out runs show as [`GAP`]. A budget the passages already fit
/// returns them whole.
pub fn select(passages: &[Excerpt], scores: &[Vec<f32>], tokens: impl Fn(&str) -> usize, budget: usize) -> Vec<Excerpt> {
    let split: Vec<Vec<&str>> = passages.iter().map(|p| sentences(&p.text)).collect();
    let cost: Vec<Vec<usize>> = split.iter().map(|ss| ss.iter().map(|s| tokens(s)).collect()).collect();
    if cost.iter().flatten().sum::<usize>() <= budget {
        return passages.to_vec();
    }
    let mut keep: Vec<Vec<bool>> = split.iter().map(|ss| vec![false; ss.len()]).collect();
    let mut used = 0;
    let score = |p: usize, i: usize| scores.get(p).and_then(|s| s.get(i)).copied().unwrap_or(f32::MIN);
    // (passage, sentence) pairs, best first; ties keep the earlier.
    let ranked = |pairs: &mut Vec<(usize, usize)>| pairs.sort_by(|a, b| score(b.0, b.1).total_cmp(&score(a.0, a.1)).then(a.cmp(b)));
    for p in 0..split.len() {
        let mut own: Vec<(usize, usize)> = (0..split[p].len()).map(|i| (p, i)).collect();
        ranked(&mut own);
        if let Some(&(_, i)) = own.first() {
            keep[p][i] = true;
            used += cost[p][i];
        }
    }
    // Then, best first, each sentence with the ones on either side of it.
    let mut all: Vec<(usize, usize)> = (0..split.len()).flat_map(|p| (0..split[p].len()).map(move |i| (p, i))).collect();
    ranked(&mut all);
    for (p, i) in all {
        let around = [i.wrapping_sub(1), i + 1];
        for j in std::iter::once(i).chain(context(&passages[p].text, &split[p], i)).chain(around) {
            if j < split[p].len() && !keep[p][j] && used + cost[p][j] <= budget {
                keep[p][j] = true;
                used += cost[p][j];
            }
        }
    }
    passages
        .iter()
        .enumerate()
        .map(|(p, passage)| {
            // Kept sentences, and one GAP for each run left out.
            let mut pieces: Vec<&str> = Vec::new();
            for (i, s) in split[p].iter().enumerate() {
                if keep[p][i] {
                    pieces.push(s);
                } else if pieces.last() != Some(&GAP) {
                    pieces.push(GAP);
                }
            }
            let text = pieces.join(" ");
            Excerpt { heading: passage.heading.clone(), text }
        })
        .collect()
}

/// The passage numbers an answer cites as `[n]`, `[n, m]` or `[n][m]`, in
/// the order first cited, keeping only numbers of passages that exist.
pub fn citations(answer: &str, passages: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        let inside = &rest[..close];
        let numbers: Option<Vec<usize>> = inside.split(',').map(|s| s.trim().parse().ok()).collect();
        for n in numbers.unwrap_or_default() {
            if (1..=passages).contains(&n) && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The passage to cite for an answer whose model cited none, by number:
/// the one sharing the most distinct words with the answer (words of three
/// or more letters that are not stop words, or holding a digit; "1,200"
/// is one word, so "200" does not match it), the better-ranked on a tie.
/// None when the answer already cites a passage, or shares no such word
/// with any. Small models seldom write the markers the prompt asks for;
/// this keeps every answer tied to a source the user can check, and
/// `--json` says when ask, not the model, made the citation.
pub fn attribute(answer: &str, passages: &[&str]) -> Option<usize> {
    if !citations(answer, passages.len()).is_empty() {
        return None;
    }
    const STOP: [&str; 24] = [
        "the", "and", "for", "that", "this", "with", "are", "was", "were", "from", "which", "not", "but", "you", "your",
        "have", "has", "had", "will", "can", "its", "their", "there", "answer",
    ];
    let words = |t: &str| -> std::collections::HashSet<String> {
        t.split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
            .filter(|w| (w.chars().count() >= 3 && !STOP.contains(&w.as_str())) || w.chars().any(|c| c.is_ascii_digit()))
            .collect()
    };
    let said = words(answer);
    passages
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, words(p).intersection(&said).count()))
        .filter(|&(_, shared)| shared > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cites_the_passage_that_shares_the_answers_words() {
        let passages = ["The council met in May.", "Drip irrigation got 2,400 euros from the council budget.", "Bread bakes for 40 minutes."];
        assert_eq!(attribute("The council approved 2,400 euros for drip irrigation.", &passages), Some(2));
        // A tie goes to the better-ranked passage; stop words do not count.
        assert_eq!(attribute("The council did.", &passages), Some(1));
        assert_eq!(attribute("Bake it for 40 minutes.", &passages), Some(3));
        assert_eq!(attribute("It took 400 days.", &passages), None, "400 is not 2,400");
    }

    #[test]
    fn leaves_answers_that_cite_or_share_nothing() {
        let passages = ["Drip irrigation got 2,400 euros.", "Bread bakes for 40 minutes."];
        assert_eq!(attribute("It got 2,400 euros [1].", &passages), None);
        assert_eq!(attribute("I do not know.", &passages), None);
    }

    #[test]
    fn citations_are_read_in_every_common_form() {
        assert_eq!(citations("Yes [2]. Also [1][3], and [2, 4].", 5), [2, 1, 3, 4]);
        // Numbers of passages that do not exist, and brackets that hold
        // something else, are not citations.
        assert_eq!(citations("See [7] and [a] and [1-2] or [ 2 ]", 3), [2]);
        assert_eq!(citations("an [unclosed", 3), Vec::<usize>::new());
    }

    #[test]
    fn sentences_end_at_full_stops_and_line_breaks() {
        let text = "# Setup\nInstall it. Then run `ask index ~/notes`!  Done?\n\n- one item\n- two";
        assert_eq!(sentences(text), ["# Setup", "Install it.", "Then run `ask index ~/notes`!", "Done?", "- one item", "- two"]);
        assert_eq!(sentences("  \n \n"), Vec::<&str>::new());
        // Wrapped prose is not cut at its line ends; numbered lists are.
        let wrapped = "Mix 50 g starter and water the night\nbefore. It is ready when it\nfloats.\n1. Mix\n2. Bake";
        assert_eq!(sentences(wrapped), ["Mix 50 g starter and water the night\nbefore.", "It is ready when it\nfloats.", "1. Mix", "2. Bake"]);
    }

    #[test]
    fn selection_keeps_the_best_sentences_their_neighbours_and_every_passage() {
        let p = |t: &str| Excerpt { heading: "h".into(), text: t.into() };
        let passages = [p("A1. A2. A3. A4. A5."), p("B1. B2.")];
        // Every sentence costs 1 token here.
        let one = |_: &str| 1;
        let scores = vec![vec![0.1, 0.2, 0.9, 0.3, 0.0], vec![0.05, 0.01]];
        // Budget 2: each passage's best only (A3, B1); the passages'
        // numbering and order stay.
        let got = select(&passages, &scores, one, 2);
        assert_eq!(got.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(), ["… A3. …", "B1. …"]);
        // Budget 3 and 4: the best sentence's neighbours, the one before
        // it first, before any sentence that scores better than they do.
        let got = select(&passages, &scores, one, 3);
        assert_eq!(got[0].text, "… A2. A3. …");
        let got = select(&passages, &scores, one, 4);
        assert_eq!(got[0].text, "… A2. A3. A4. …");
        assert_eq!(got[1].text, "B1. …");
        // Budget 5: then the next best (A4), whose neighbour A5 fits.
        let got = select(&passages, &scores, one, 5);
        assert_eq!(got[0].text, "… A2. A3. A4. A5.");
        // Costs count: a sentence too long for the room left is passed
        // over for a shorter one further down.
        let long_a2 = |s: &str| if s == "A2." { 5 } else { 1 };
        assert_eq!(select(&passages, &scores, long_a2, 3)[0].text, "… A3. A4. …");
        // A budget everything fits returns the passages as they were.
        assert_eq!(select(&passages, &scores, one, 7), passages);
    }

    #[test]
    fn setext_headings_are_one_sentence_with_their_underline() {
        let text = "Intro text.\n\nMagic Number\n------------\n4 Bytes, Little endian format.\nValue : 0x184D2204\n\nTitle\n=====\nBody.";
        assert_eq!(
            sentences(text),
            ["Intro text.", "Magic Number\n------------", "4 Bytes, Little endian format.", "Value : 0x184D2204", "Title\n=====", "Body."]
        );
    }

    /// A value keeps its label: the heading above it, a table row's column
    /// names, before the sentences beside it.
    #[test]
    fn selection_keeps_a_sentences_heading_and_a_rows_column_names() {
        let p = |t: &str| Excerpt { heading: "h".into(), text: t.into() };
        let one = |_: &str| 1;
        let spec = p("Some intro.\n\n__Magic Number__\n\n4 Bytes, Little endian format.\nValue : 0x184D2204\n\n__Frame Descriptor__\n\n3 to 15 Bytes.");
        assert_eq!(sentences(&spec.text).len(), 6);
        let scores = vec![vec![0.1, 0.2, 0.3, 0.9, 0.5, 0.4]];
        assert_eq!(select(std::slice::from_ref(&spec), &scores, one, 2)[0].text, "… __Magic Number__ … Value : 0x184D2204 …");
        // Then the sentence before it, as for any sentence.
        assert_eq!(select(std::slice::from_ref(&spec), &scores, one, 3)[0].text, "… __Magic Number__ 4 Bytes, Little endian format. Value : 0x184D2204 …");
        // A heading chosen for itself brings its paragraph, not the next.
        let scores = vec![vec![0.1, 0.9, 0.3, 0.2, 0.5, 0.4]];
        assert_eq!(select(std::slice::from_ref(&spec), &scores, one, 3)[0].text, "… __Magic Number__ 4 Bytes, Little endian format. Value : 0x184D2204 …");
        let prose = p("__Magic Number__\n\nFirst.\nSecond.\n\nOther paragraph.\n\nMore.");
        // Up to the blank line that ends that paragraph.
        let scores = vec![vec![0.9, 0.1, 0.1, 0.0, 0.5]];
        assert_eq!(select(std::slice::from_ref(&prose), &scores, one, 4)[0].text, "__Magic Number__ First. Second. … More.");
        let table = p("Flags:\n\n| Flag | Default |\n|---|---|\n| --fork | off |\n| --persistent | on |");
        assert_eq!(sentences(&table.text).len(), 5);
        let scores = vec![vec![0.1, 0.2, 0.0, 0.6, 0.9]];
        assert_eq!(select(std::slice::from_ref(&table), &scores, one, 2)[0].text, "… | Flag | Default | … | --persistent | on |");
    }

    #[test]
    fn the_user_message_numbers_passages_before_the_question() {
        let p = |h: &str, t: &str| Excerpt { heading: h.into(), text: t.into() };
        let passages = [p("a.md:1-3", " one \n"), p("b.txt:4", "two")];
        let msg = user_message(&passages, "why?", Layout::Plain);
        assert_eq!(msg, "Passages:\n\n[1] a.md:1-3\none\n\n[2] b.txt:4\ntwo\n\nQuestion: why?");
        assert_eq!(user_message(&passages, "why?", Layout::Quote), msg);
        // The best passage last, still numbered 1.
        let msg = user_message(&passages, "why?", Layout::BestLast);
        assert_eq!(msg, "Passages:\n\n[2] b.txt:4\ntwo\n\n[1] a.md:1-3\none\n\nQuestion: why?");
        let msg = user_message(&passages, "why?", Layout::Restate);
        assert_eq!(msg, "Question: why?\n\nPassages:\n\n[1] a.md:1-3\none\n\n[2] b.txt:4\ntwo\n\nQuestion: why?");
    }

    #[test]
    fn every_prompt_begins_with_its_layouts_opening() {
        let model = Generator::load(&ask_engine::fetched_model("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
        let passages = [Excerpt { heading: "box.md:1".into(), text: "The box holds a red kite.".into() }];
        for (name, layout) in Layout::ALL {
            let opening = opening(&model, layout).unwrap();
            let (prompt, _) = fit(&model, &[], &passages, "What is in the box?", 64, layout).unwrap();
            assert!(prompt.starts_with(&opening), "{name}: {opening:?} / {prompt:?}");
            let first_words = if layout == Layout::Restate { "Question: " } else { "Passages:\n\n" };
            assert!(opening.contains(layout.system()) && opening.ends_with(first_words), "{name}: {opening:?}");
        }
    }

    #[test]
    fn earlier_turns_come_first_and_the_oldest_go_when_the_context_is_full() {
        let model = Generator::load(&ask_engine::fetched_model("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
        let passages = [Excerpt { heading: "box.md:1".into(), text: "The box holds a red kite.".into() }];
        let turn = |i: usize, words: usize| Exchange {
            question: format!("Question number {i}?"),
            answer: format!("Answer {i} [1]: {}", "word ".repeat(words)),
        };
        // Two short turns fit: both, in order, their passage numbers gone,
        // before the passages and the question.
        let (prompt, kept) = fit(&model, &[turn(1, 3), turn(2, 3)], &passages, "And its colour?", 64, Layout::Plain).unwrap();
        assert_eq!(kept, 1);
        let (q1, q2, now) = (prompt.find("Question number 1?").unwrap(), prompt.find("Question number 2?").unwrap(), prompt.find("The box holds").unwrap());
        assert!(q1 < q2 && q2 < now && prompt.ends_with("Question: And its colour? (following up on: Question number 2?)<|im_end|>\n<|im_start|>assistant\n"), "{prompt}");
        assert!(!prompt.contains("[1]:") && prompt.contains("Answer 1: word"), "{prompt}");
        // Forty turns of some 600 tokens each do not: the oldest go, the
        // latest and the passage stay, and the prompt fits with room for
        // the answer.
        let long: Vec<Exchange> = (1..=40).map(|i| turn(i, 600)).collect();
        let (prompt, kept) = fit(&model, &long, &passages, "And its colour?", 256, Layout::Plain).unwrap();
        assert_eq!(kept, 1);
        assert!(prompt.contains("The box holds a red kite.") && prompt.contains("Question number 40?"), "the latest turn stays");
        assert!(!prompt.contains("Question number 1?"), "the oldest turn goes");
        assert!(model.count_tokens(&prompt).unwrap() + 256 <= model.context_length());
    }

    #[test]
    fn layouts_read_by_name() {
        for (name, layout) in Layout::ALL {
            assert_eq!(name.parse::<Layout>(), Ok(layout));
            assert_eq!(layout.to_string(), name);
        }
        assert!("sideways".parse::<Layout>().unwrap_err().contains("plain, restate, best-last, quote"));
        assert_eq!(Layout::default(), Layout::Plain);
    }
}

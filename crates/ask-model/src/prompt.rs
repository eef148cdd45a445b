//! The grounded prompt: numbered passages, an instruction, the question;
//! and reading the citations back out of an answer.
//!
//! `ask query` and `ask eval` build their prompts here, so the prompt that
//! is measured is the prompt that is shipped. The layout was chosen by the
//! answer accuracy it reached on the shared msmarco-5k-qa set (README,
//! "Answers").

use crate::{Generator, ModelError};

/// A retrieved passage as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// Where it comes from, as the model reads it (a file name and lines).
    pub heading: String,
    /// Its text.
    pub text: String,
}

/// The system message carries the rules; the user message holds only the
/// numbered passages and the question. Of the layouts tried on
/// msmarco-5k-qa (README, "Answers") this one was the most accurate with
/// the default model and cited a passage holding the answer most often.
pub const SYSTEM: &str = "You answer questions from the user's documents. Use only the numbered passages \
you are given. Answer in one to three sentences and cite the passage that supports each sentence by its \
number in brackets, like [2]. If the passages do not contain the answer, say that they do not.";

/// The user message: numbered passages, then the question.
pub fn user_message(passages: &[Passage], question: &str) -> String {
    let mut out = String::from("Passages:\n\n");
    for (i, p) in passages.iter().enumerate() {
        out.push_str(&format!("[{}] {}\n{}\n\n", i + 1, p.heading, p.text.trim()));
    }
    out.push_str(&format!("Question: {question}"));
    out
}

/// The chat prompt for `question` over as many of `passages` (best first)
/// as fit in the model's context with room for `answer_tokens` (at most
/// half the context): whole passages only, the lowest-ranked dropped
/// first, at least one kept. Returns the prompt and how many passages it
/// holds.
pub fn fit(model: &Generator, passages: &[Passage], question: &str, answer_tokens: usize) -> Result<(String, usize), ModelError> {
    let context = model.context_length();
    let budget = context.saturating_sub(answer_tokens.min(context / 2));
    let mut n = passages.len();
    loop {
        let prompt = model.chat_prompt(SYSTEM, &user_message(&passages[..n], question))?;
        if n <= 1 || model.count_tokens(&prompt)? < budget {
            return Ok((prompt, n));
        }
        n -= 1;
    }
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
    fn the_user_message_numbers_passages_before_the_question() {
        let p = |h: &str, t: &str| Passage { heading: h.into(), text: t.into() };
        let msg = user_message(&[p("a.md:1-3", " one \n"), p("b.txt:4", "two")], "why?");
        assert!(msg.starts_with("Passages:\n\n[1] a.md:1-3\none\n\n[2] b.txt:4\ntwo\n\n"), "{msg}");
        assert!(msg.ends_with("Question: why?"), "{msg}");
    }
}

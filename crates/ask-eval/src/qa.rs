//! Answer quality: question sets with short gold answers, and the scores
//! `ask eval` reports for generated answers.
//!
//! A set is a `questions.jsonl` of `{"id", "question", "answers", "source"}`
//! or a `conversations.jsonl` of `{"id", "turns", "source", "full"}`
//! (see `../shared/eval/msmarco-5k-qa/README.md`): an answer is correct when,
//! normalised, it contains any of the `answers` normalised the same way.
//! Normalisation follows that set's `check.py`: lower-case, drop thousands
//! separators, punctuation replaced by a space or deleted (both are tried),
//! whitespace collapsed.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::beir::{jsonl, EvalError};

/// One question with its gold answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Question {
    /// Its id.
    pub id: String,
    /// The question as asked.
    pub question: String,
    /// Short gold strings; an answer containing any of them is correct.
    pub answers: Vec<String>,
    /// The passage id (BEIR corpus) or relative file path (a folder of
    /// documents) that holds the answer.
    pub source: String,
}

/// Reads a `questions.jsonl`; a question without gold answers is an error
/// naming its line, since it could never be scored.
pub fn load_questions(path: &Path) -> Result<Vec<Question>, EvalError> {
    let questions: Vec<Question> = jsonl(path)?;
    if let Some(q) = questions.iter().find(|q| q.answers.iter().all(|a| normalize(a, true).is_empty())) {
        return Err(EvalError::Invalid { path: path.into(), message: format!("question {:?} has no gold answer", q.id) });
    }
    Ok(questions)
}

/// A user's turn of a judged conversation; the last carries the gold answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserTurn {
    /// What the user asks.
    pub user: String,
    /// Gold strings (the last turn only).
    #[serde(default)]
    pub answers: Vec<String>,
}

/// A judged conversation (`conversations.jsonl`): turns whose last is a
/// follow-up scored like a [`Question`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Conversation {
    /// Its id (a question set's query id, for its relevance judgements).
    pub id: String,
    /// The user's turns, oldest first.
    pub turns: Vec<UserTurn>,
    /// The passage that holds the last turn's answer.
    pub source: String,
    /// The last turn written out in full, to compare with.
    #[serde(default)]
    pub full: Option<String>,
}

impl Conversation {
    /// The last turn as a question of its own.
    pub fn follow_up(&self) -> Question {
        let last = self.turns.last().expect("load_conversations checks");
        Question { id: self.id.clone(), question: last.user.clone(), answers: last.answers.clone(), source: self.source.clone() }
    }
}

/// Reads a `conversations.jsonl`; a conversation of fewer than two turns,
/// or whose last turn has no gold answer, is an error naming it.
pub fn load_conversations(path: &Path) -> Result<Vec<Conversation>, EvalError> {
    let conversations: Vec<Conversation> = jsonl(path)?;
    for c in &conversations {
        let scored = c.turns.last().is_some_and(|t| t.answers.iter().any(|a| !normalize(a, true).is_empty()));
        if c.turns.len() < 2 || !scored {
            return Err(EvalError::Invalid {
                path: path.into(),
                message: format!("conversation {:?} needs two turns or more, the last with a gold answer", c.id),
            });
        }
    }
    Ok(conversations)
}

/// The lowest qrels grade that counts a passage as holding the answer:
/// TREC's graded sets (msmarco among them) call 2 "highly relevant" and 3
/// "perfectly relevant", and binary measures over them start at 2.
pub const ANSWERING_GRADE: i32 = 2;

/// The passages that hold a question's answer: its named `source` and,
/// when the corpus carries relevance judgements, every passage judged
/// [`ANSWERING_GRADE`] or higher for the question's id. A set like
/// msmarco-5k-qa names one source out of the dozens of passages judged to
/// answer the same query; scoring citations against that one alone counts
/// a citation of an equally good passage as wrong.
pub fn answering_passages(q: &Question, qrels: Option<&HashMap<String, HashMap<String, i32>>>) -> HashSet<String> {
    let judged = qrels.and_then(|r| r.get(&q.id)).into_iter().flatten();
    judged.filter(|(_, &g)| g >= ANSWERING_GRADE).map(|(id, _)| id.clone()).chain([q.source.clone()]).collect()
}

/// Lower-cased, thousands separators dropped (a comma between a digit and
/// exactly three digits), every character that is not a letter, digit or
/// whitespace replaced by a space (or deleted, with `delete`), whitespace
/// collapsed.
pub fn normalize(text: &str, delete: bool) -> String {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(|c| c.is_ascii_digit());
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let separator = c == ',' && i > 0 && digit(i - 1) && (1..=3).all(|d| digit(i + d)) && !digit(i + 4);
        if separator {
            continue;
        }
        if c.is_alphanumeric() || c.is_whitespace() {
            out.push(c);
        } else if !delete {
            out.push(' ');
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `answer` contains one of `golds`, under either punctuation rule.
pub fn is_correct(answer: &str, golds: &[String]) -> bool {
    [false, true].iter().any(|&delete| {
        let said = normalize(answer, delete);
        golds.iter().map(|g| normalize(g, delete)).any(|g| !g.is_empty() && said.contains(&g))
    })
}

/// Whether an answer says the passages do not hold the answer.
pub fn says_not_found(answer: &str) -> bool {
    const PHRASES: [&str; 14] = [
        "do not know",
        "dont know",
        "does not know",
        "not contain",
        "do not mention",
        "does not mention",
        "not mentioned",
        "no information",
        "not provide",
        "cannot answer",
        "cannot be answered",
        "not enough information",
        "not specified",
        "not stated",
    ];
    let said = normalize(answer, true);
    PHRASES.iter().any(|p| said.contains(&normalize(p, true)))
}

/// What happened to one question.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// The question's id.
    pub id: String,
    /// The answer contains a gold string.
    pub correct: bool,
    /// The source was among the passages given to the model.
    pub hit: bool,
    /// The model itself cited the source as `[n]`.
    pub cited: bool,
    /// A passage judged to answer the question (see [`answering_passages`])
    /// was among those given to the model.
    pub hit_judged: bool,
    /// The model itself cited a passage judged to answer the question.
    pub cited_judged: bool,
    /// The model itself cited a passage that contains a gold string (the
    /// source or another passage that holds the answer).
    pub cited_support: bool,
    /// The model cited nothing, and the citation ask added names the source.
    pub attributed: bool,
    /// The answer says the passages do not hold the answer.
    pub not_found: bool,
    /// From the question to the first answer text (retrieval, prompt,
    /// prefill, first token), in milliseconds.
    pub first_token_ms: f64,
    /// From the question to the end of the answer, in milliseconds.
    pub answer_ms: f64,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Of those, the ones whose keys and values were cached (the prompt's
    /// opening), not prefilled.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Decode speed.
    pub decode_tokens_per_s: f64,
    /// Prompt-lookup decoding: tokens drafted.
    pub drafted_tokens: usize,
    /// Of those, the ones the model chose.
    pub accepted_tokens: usize,
    /// The answer as generated.
    pub answer: String,
}

/// The means and percentiles over a set of outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnswerScores {
    /// Questions scored.
    pub questions: usize,
    /// Share of answers that contain a gold string.
    pub accuracy: f64,
    /// Share of questions whose source was given to the model.
    pub retrieval_hit: f64,
    /// Share of questions whose answer the model itself cited with the
    /// source's number.
    pub citation_accuracy: f64,
    /// Share of questions given a passage judged to answer them.
    pub retrieval_hit_judged: f64,
    /// Share of questions whose answer the model itself cited with a
    /// passage judged to answer them.
    pub citation_accuracy_judged: f64,
    /// Share of questions whose answer the model itself cited with a
    /// passage that contains a gold string.
    pub citation_support: f64,
    /// Share of questions where the model cited nothing and ask's added
    /// citation names the source.
    pub attributed_accuracy: f64,
    /// Share of answers that say the passages do not hold the answer.
    pub not_found: f64,
    /// Median time to first answer text, ms.
    pub first_token_ms_p50: f64,
    /// 90th percentile of the same, ms.
    pub first_token_ms_p90: f64,
    /// Median whole-answer time, ms.
    pub answer_ms_p50: f64,
    /// 90th percentile of the same, ms.
    pub answer_ms_p90: f64,
    /// Median prompt length, tokens.
    pub prompt_tokens_p50: f64,
    /// Median decode speed, tokens/s.
    pub decode_tokens_per_s_p50: f64,
    /// Prompt-lookup decoding: share of all drafted tokens accepted (0
    /// when none were drafted).
    pub lookup_acceptance: f64,
    /// Prompt-lookup decoding: drafted tokens per generated one.
    pub lookup_drafted_per_token: f64,
}

/// The `p`-th percentile (0-100) by linear interpolation between closest
/// ranks; 0 for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut xs: Vec<f64> = values.to_vec();
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (xs.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    xs[lo] + (xs[hi] - xs[lo]) * (rank - lo as f64)
}

/// a / b, or 0 when b is.
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl AnswerScores {
    /// Scores a run.
    pub fn from(outcomes: &[Outcome]) -> AnswerScores {
        let n = outcomes.len();
        let share = |f: fn(&Outcome) -> bool| if n == 0 { 0.0 } else { outcomes.iter().filter(|o| f(o)).count() as f64 / n as f64 };
        let values = |f: fn(&Outcome) -> f64| outcomes.iter().map(f).collect::<Vec<f64>>();
        let (first, whole) = (values(|o| o.first_token_ms), values(|o| o.answer_ms));
        AnswerScores {
            questions: n,
            accuracy: share(|o| o.correct),
            retrieval_hit: share(|o| o.hit),
            citation_accuracy: share(|o| o.cited),
            retrieval_hit_judged: share(|o| o.hit_judged),
            citation_accuracy_judged: share(|o| o.cited_judged),
            citation_support: share(|o| o.cited_support),
            attributed_accuracy: share(|o| o.attributed),
            not_found: share(|o| o.not_found),
            first_token_ms_p50: percentile(&first, 50.0),
            first_token_ms_p90: percentile(&first, 90.0),
            answer_ms_p50: percentile(&whole, 50.0),
            answer_ms_p90: percentile(&whole, 90.0),
            prompt_tokens_p50: percentile(&values(|o| o.prompt_tokens as f64), 50.0),
            decode_tokens_per_s_p50: percentile(&values(|o| o.decode_tokens_per_s), 50.0),
            lookup_acceptance: ratio(outcomes.iter().map(|o| o.accepted_tokens).sum(), outcomes.iter().map(|o| o.drafted_tokens).sum()),
            lookup_drafted_per_token: ratio(outcomes.iter().map(|o| o.drafted_tokens).sum(), outcomes.iter().map(|o| o.generated_tokens).sum()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golds(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalisation_follows_the_reference_rules() {
        assert_eq!(normalize("The  Salvation-Army, founded 1,865!", false), "the salvation army founded 1865");
        assert_eq!(normalize("The  Salvation-Army", true), "the salvationarmy");
        // Only a comma between a digit and exactly three digits separates thousands.
        assert_eq!(normalize("1,2345 and 12,50 and 1,200,000", false), "1 2345 and 12 50 and 1200000");
        assert_eq!(normalize("Zürich, ÉTÉ", false), "zürich été");
    }

    #[test]
    fn an_answer_is_correct_when_it_contains_a_gold_string() {
        assert!(is_correct("It was founded in 1865 [1].", &golds(&["1865"])));
        assert!(is_correct("Costs are about $1,200 a year.", &golds(&["1200"])));
        // Either punctuation rule may match: "counter-current" deleted is
        // "countercurrent", replaced is "counter current".
        assert!(is_correct("a counter-current exchange", &golds(&["countercurrent"])));
        assert!(is_correct("a counter-current exchange", &golds(&["counter current"])));
        assert!(is_correct("High Blood Pressure.", &golds(&["hypertension", "high blood pressure"])));
        assert!(!is_correct("It was founded in 1866.", &golds(&["1865"])));
        assert!(!is_correct("I do not know.", &golds(&["1865"])));
    }

    #[test]
    fn answers_that_find_nothing_are_recognised() {
        assert!(says_not_found("The passages do not contain the answer."));
        assert!(says_not_found("I don't know."));
        assert!(says_not_found("This information is not mentioned in the passages [2]."));
        assert!(!says_not_found("The Salvation Army was founded in 1865 [1]."));
        assert!(!says_not_found("Nothing contains more iron than spinach."));
    }

    #[test]
    fn passages_judged_2_or_more_answer_as_well_as_the_source() {
        let q = Question { id: "q1".into(), question: "?".into(), answers: golds(&["x"]), source: "s".into() };
        let mut qrels: HashMap<String, HashMap<String, i32>> = HashMap::new();
        qrels.insert("q1".into(), [("a", 3), ("b", 2), ("c", 1), ("d", 0)].map(|(k, v)| (k.to_string(), v)).into());
        qrels.insert("q2".into(), [("e".to_string(), 3)].into());
        let mut got: Vec<String> = answering_passages(&q, Some(&qrels)).into_iter().collect();
        got.sort();
        assert_eq!(got, ["a", "b", "s"]);
        assert_eq!(answering_passages(&q, None).into_iter().collect::<Vec<_>>(), ["s"]);
    }

    #[test]
    fn the_50th_percentile_is_the_median() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[4.0, 1.0, 2.0, 3.0], 50.0), 2.5);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 75.0), 4.0);
    }

    #[test]
    fn scores_are_shares_and_percentiles_of_the_outcomes() {
        let o = |correct, hit, cited, ms| Outcome { correct, hit, cited, cited_support: correct, first_token_ms: ms, answer_ms: 2.0 * ms, ..Default::default() };
        let s = AnswerScores::from(&[o(true, true, true, 1000.0), o(false, true, false, 3000.0), o(true, false, false, 2000.0), o(false, false, false, 4000.0)]);
        assert_eq!(s.questions, 4);
        assert_eq!((s.accuracy, s.retrieval_hit, s.citation_accuracy, s.citation_support), (0.5, 0.5, 0.25, 0.5));
        assert_eq!(s.first_token_ms_p50, 2500.0);
        assert_eq!(s.first_token_ms_p90, 3700.0);
        assert_eq!(s.answer_ms_p50, 5000.0);
        assert_eq!(AnswerScores::from(&[]).accuracy, 0.0);
    }

    #[test]
    fn a_question_without_a_gold_answer_is_refused() {
        let dir = std::env::temp_dir().join(format!("ask-qa-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("questions.jsonl");
        std::fs::write(&path, "{\"id\":\"1\",\"question\":\"q\",\"answers\":[\"x\"],\"source\":\"d\",\"kind\":\"factoid\"}\n{\"id\":\"2\",\"question\":\"q\",\"answers\":[\"!\"],\"source\":\"d\"}\n").unwrap();
        let err = load_questions(&path).unwrap_err().to_string();
        std::fs::write(&path, "{\"id\":\"1\",\"question\":\"q\",\"answers\":[\"x\"],\"source\":\"d\"}\n").unwrap();
        let ok = load_questions(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.ends_with("questions.jsonl: question \"2\" has no gold answer"), "{err}");
        assert_eq!(ok[0].answers, ["x"]);
    }

    #[test]
    fn conversations_need_a_scored_follow_up() {
        let dir = std::env::temp_dir().join(format!("ask-conv-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conversations.jsonl");
        let good = r#"{"id":"7","turns":[{"user":"Who founded it?"},{"user":"When?","answers":["1865"]}],"source":"d","full":"when was it founded"}"#;
        std::fs::write(&path, format!("{good}\n")).unwrap();
        let ok = load_conversations(&path).unwrap();
        std::fs::write(&path, format!("{good}\n{}\n", r#"{"id":"8","turns":[{"user":"When?","answers":["1865"]}],"source":"d"}"#)).unwrap();
        let one_turn = load_conversations(&path).unwrap_err().to_string();
        std::fs::write(&path, r#"{"id":"9","turns":[{"user":"Who?"},{"user":"When?"}],"source":"d"}"#).unwrap();
        let unscored = load_conversations(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        let q = ok[0].follow_up();
        assert_eq!((q.id.as_str(), q.question.as_str(), q.answers.as_slice(), q.source.as_str()), ("7", "When?", &["1865".to_owned()][..], "d"));
        assert_eq!(ok[0].full.as_deref(), Some("when was it founded"));
        assert!(one_turn.contains("conversation \"8\""), "{one_turn}");
        assert!(unscored.contains("conversation \"9\""), "{unscored}");
    }
}

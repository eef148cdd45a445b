//! BEIR's layout: `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl`
//! (`_id`, `text`) and `qrels/test.tsv` (`query-id`, `corpus-id`, `score`,
//! with an optional header line).
//!
//! Lines are split on `\n` only: MS MARCO passages contain U+2028, which
//! some line readers take for a line break.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors name the file and, for bad lines, the line number.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file was read but its content cannot be used.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A line could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
}

/// One passage of the corpus.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Doc {
    /// Its id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Its title (often empty).
    #[serde(default)]
    pub title: String,
    /// Its text.
    pub text: String,
}

impl Doc {
    /// The text to index: the title, a blank line and the text.
    pub fn indexed_text(&self) -> String {
        let title = self.title.trim();
        if title.is_empty() {
            self.text.trim().to_owned()
        } else {
            format!("{title}\n\n{}", self.text.trim())
        }
    }
}

/// One query.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Query {
    /// Its id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Its text.
    pub text: String,
}

/// A BEIR dataset, as read.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Where it was read from.
    pub dir: PathBuf,
    /// The corpus, in file order.
    pub corpus: Vec<Doc>,
    /// The queries, in file order.
    pub queries: Vec<Query>,
    /// Relevance judgements: query id → (document id → grade).
    pub qrels: HashMap<String, HashMap<String, i32>>,
}

fn read(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.into(), source })
}

pub(crate) fn jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, EvalError> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line)
            .map_err(|e| EvalError::Parse { path: path.into(), line: i + 1, message: e.to_string() })?;
        out.push(item);
    }
    Ok(out)
}

/// Parses a qrels TSV. A first line whose score is not a number is a header.
pub fn parse_qrels(path: &Path, text: &str) -> Result<HashMap<String, HashMap<String, i32>>, EvalError> {
    let mut qrels: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = |message: String| EvalError::Parse { path: path.into(), line: i + 1, message };
        if fields.len() < 3 {
            return Err(bad(format!("expected query-id, corpus-id and score separated by tabs, got {line:?}")));
        }
        let score = match fields[2].trim().parse::<i32>() {
            Ok(s) => s,
            Err(_) if i == 0 => continue, // header
            Err(_) => return Err(bad(format!("score {:?} is not an integer", fields[2]))),
        };
        qrels.entry(fields[0].trim().to_owned()).or_default().insert(fields[1].trim().to_owned(), score);
    }
    Ok(qrels)
}

impl Dataset {
    /// Reads `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/test.tsv`.
    pub fn load(dir: &Path) -> Result<Dataset, EvalError> {
        let corpus = jsonl(&dir.join("corpus.jsonl"))?;
        let queries = jsonl(&dir.join("queries.jsonl"))?;
        let qrels_path = dir.join("qrels/test.tsv");
        let qrels = parse_qrels(&qrels_path, &read(&qrels_path)?)?;
        Ok(Dataset { dir: dir.into(), corpus, queries, qrels })
    }

    /// The queries that are judged and have at least one relevant
    /// (grade > 0) document: the others are left out of the means, as
    /// BEIR does.
    pub fn judged_queries(&self) -> Vec<&Query> {
        self.queries
            .iter()
            .filter(|q| self.qrels.get(&q.id).is_some_and(|j| j.values().any(|&g| g > 0)))
            .collect()
    }
}

/// A corpus id as a file name: letters, digits, `-`, `_` and `.` are kept
/// (a leading `.` is escaped, so no file is hidden), every other byte
/// becomes `%XX`; `.txt` is added. Distinct ids give distinct names.
pub fn file_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 4);
    for (i, b) in id.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".txt");
    out
}

impl Dataset {
    /// Writes each passage of the corpus to `docs` (which exists) as a
    /// text file named by [`file_name`], once: a marker file records that
    /// every passage was written, so a run killed half-way writes them
    /// again and a later run writes nothing.
    pub fn write_files(&self, docs: &Path) -> Result<(), EvalError> {
        let marker = docs.join(".complete");
        if marker.exists() {
            return Ok(());
        }
        for doc in &self.corpus {
            let path = docs.join(file_name(&doc.id));
            std::fs::write(&path, doc.indexed_text() + "\n").map_err(|source| EvalError::Io { path, source })?;
        }
        std::fs::write(&marker, b"").map_err(|source| EvalError::Io { path: marker, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_safe_distinct_file_names() {
        assert_eq!(file_name("4380635"), "4380635.txt");
        assert_eq!(file_name("a/b c"), "a%2Fb%20c.txt");
        assert_eq!(file_name(".hidden"), "%2Ehidden.txt");
        assert_eq!(file_name("x.y"), "x.y.txt");
        assert_ne!(file_name("a%2F"), file_name("a/"));
    }

    #[test]
    fn qrels_skip_a_header_and_name_bad_lines() {
        let p = Path::new("q.tsv");
        let q = parse_qrels(p, "query-id\tcorpus-id\tscore\n1\ta\t2\n1\tb\t0\r\n2\tc\t1\n").unwrap();
        assert_eq!(q["1"]["a"], 2);
        assert_eq!(q["1"]["b"], 0);
        assert_eq!(q["2"].len(), 1);
        let err = parse_qrels(p, "1\ta\t2\n1\tb\tx\n").unwrap_err().to_string();
        assert_eq!(err, "q.tsv:2: score \"x\" is not an integer");
    }

    #[test]
    fn a_dataset_reads_with_unicode_line_separators_inside_passages() {
        let dir = std::env::temp_dir().join(format!("ask-eval-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("qrels")).unwrap();
        std::fs::write(
            dir.join("corpus.jsonl"),
            "{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"one\u{2028}two\"}\n{\"_id\": \"d2\", \"text\": \"x\"}\n",
        )
        .unwrap();
        std::fs::write(dir.join("queries.jsonl"), "{\"_id\": \"q1\", \"text\": \"one\"}\n{\"_id\": \"q2\", \"text\": \"none\"}\n").unwrap();
        std::fs::write(dir.join("qrels/test.tsv"), "q1\td1\t1\nq2\td2\t0\n").unwrap();
        let ds = Dataset::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(ds.corpus.len(), 2);
        assert_eq!(ds.corpus[0].indexed_text(), "T\n\none\u{2028}two");
        assert_eq!(ds.corpus[1].indexed_text(), "x");
        // q2 has no relevant document: it is left out.
        let judged: Vec<&str> = ds.judged_queries().iter().map(|q| q.id.as_str()).collect();
        assert_eq!(judged, ["q1"]);
    }
}

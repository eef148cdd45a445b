//! Ranking metrics with the standard definitions (as in BEIR and
//! trec_eval): a document's gain is 2^grade − 1, the discount at 1-based
//! rank r is log2(r + 1), and the ideal DCG ranks every judged document of
//! the query, not only the retrieved ones. A document is relevant when its
//! grade is above 0; unjudged documents count as grade 0.

use std::collections::HashMap;

/// One query's judgements: document id → grade.
pub type Judged = HashMap<String, i32>;

fn grade(judged: &Judged, id: &str) -> i32 {
    judged.get(id).copied().unwrap_or(0)
}

fn gain(grade: i32) -> f64 {
    if grade > 0 {
        2f64.powi(grade) - 1.0
    } else {
        0.0
    }
}

fn discount(rank: usize) -> f64 {
    ((rank + 1) as f64).log2()
}

/// Normalised discounted cumulative gain of the first `k` ranked ids.
pub fn ndcg_at_k(ranked: &[&str], judged: &Judged, k: usize) -> f64 {
    let dcg: f64 = ranked.iter().take(k).enumerate().map(|(i, id)| gain(grade(judged, id)) / discount(i + 1)).sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| gain(g) / discount(i + 1)).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Share of the relevant documents found in the first `k`.
pub fn recall_at_k(ranked: &[&str], judged: &Judged, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|id| grade(judged, id) > 0).count();
    found as f64 / relevant as f64
}

/// Reciprocal rank of the first relevant document within the first `k`, else 0.
pub fn mrr_at_k(ranked: &[&str], judged: &Judged, k: usize) -> f64 {
    ranked.iter().take(k).position(|id| grade(judged, id) > 0).map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Means over queries of the three metrics at one cut-off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// Mean nDCG@k.
    pub ndcg: f64,
    /// Mean recall@k.
    pub recall: f64,
    /// Mean MRR@k.
    pub mrr: f64,
    /// Queries averaged.
    pub queries: usize,
}

impl Scores {
    /// Adds one query's ranking.
    pub fn add(&mut self, ranked: &[&str], judged: &Judged, k: usize) {
        self.ndcg += ndcg_at_k(ranked, judged, k);
        self.recall += recall_at_k(ranked, judged, k);
        self.mrr += mrr_at_k(ranked, judged, k);
        self.queries += 1;
    }

    /// The means (all zero when no query was added).
    pub fn mean(&self) -> Scores {
        let n = self.queries.max(1) as f64;
        Scores { ndcg: self.ndcg / n, recall: self.recall / n, mrr: self.mrr / n, queries: self.queries }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> Judged {
        pairs.iter().map(|(id, g)| (id.to_string(), *g)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    // Judged: z (grade 3, never retrieved), b (2), c (1), n (0).
    // Ranking a, b, c: a unjudged, so DCG = 3/log2(3) + 1/log2(4)
    // = 2.392789; the ideal ranks z, b, c: 7 + 3/log2(3) + 1/log2(4)
    // = 9.392789; nDCG = 0.254747 (worked by hand, checked in Python).
    #[test]
    fn ndcg_counts_unretrieved_judged_documents_in_the_ideal() {
        let j = judged(&[("z", 3), ("b", 2), ("c", 1), ("n", 0)]);
        assert!(close(ndcg_at_k(&["a", "b", "c"], &j, 10), 0.25474746577380225));
        // At k = 2 only b counts, against the ideal z, b: 1.892789 / 8.892789.
        assert!(close(ndcg_at_k(&["a", "b", "c"], &j, 2), 0.2128453970090281));
        assert!(close(ndcg_at_k(&["z", "b", "c"], &j, 10), 1.0));
        assert!(close(ndcg_at_k(&["n", "a"], &j, 10), 0.0));
    }

    #[test]
    fn recall_and_mrr() {
        let j = judged(&[("z", 3), ("b", 2), ("c", 1), ("n", 0)]);
        assert!(close(recall_at_k(&["a", "b", "c"], &j, 10), 2.0 / 3.0));
        assert!(close(recall_at_k(&["a", "b", "c"], &j, 1), 0.0));
        // The grade-0 document is judged but not relevant.
        assert!(close(mrr_at_k(&["n", "a", "c"], &j, 10), 1.0 / 3.0));
        assert!(close(mrr_at_k(&["n", "a", "c"], &j, 2), 0.0));
        assert!(close(mrr_at_k(&["b"], &j, 10), 1.0));
    }

    #[test]
    fn means_over_queries() {
        let j = judged(&[("a", 1)]);
        let mut s = Scores::default();
        s.add(&["a"], &j, 10);
        s.add(&["x", "a"], &j, 10);
        let m = s.mean();
        assert_eq!(m.queries, 2);
        assert!(close(m.mrr, 0.75));
        assert!(close(m.recall, 1.0));
        assert!(close(m.ndcg, (1.0 + 1.0 / 3f64.log2()) / 2.0));
    }
}

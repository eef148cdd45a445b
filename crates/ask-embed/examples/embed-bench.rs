//! Encoder throughput on fixed-length inputs, the forward pass alone:
//! tokens/s for 64-, 128- and 256-token inputs in batches of 32, built from
//! real text (the msmarco-5k passages) cut to exact token counts; and,
//! beside each, how fast the tokenizer alone turns the same inputs' text
//! back into tokens (what the ONNX path does a second time, since
//! fastembed takes text).
//!
//!     cargo run --release -p ask-model --example embed-bench -- MODEL_DIR CORPUS.jsonl [N]

use std::time::Instant;

use ask_embed::Embedder;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = std::path::Path::new(&args[1]);
    let corpus = std::fs::read_to_string(&args[2]).expect("corpus");
    let n: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(256);
    let embedder = Embedder::load(model).expect("model");
    // All passages' tokens in one stream, without special tokens.
    let text: String = corpus
        .split('\n')
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["text"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut tok = embedder.tokenizer().clone();
    tok.with_truncation(None).unwrap();
    let stream = tok.encode(text, false).unwrap().get_ids().to_vec();
    let (cls, sep) = (101u32, 102u32);
    for len in [64usize, 128, 256] {
        let inputs: Vec<Vec<u32>> = stream
            .chunks(len - 2)
            .take(n)
            .map(|c| std::iter::once(cls).chain(c.iter().copied()).chain(std::iter::once(sep)).collect())
            .collect();
        embedder.embed_token_ids(&inputs[..32.min(inputs.len())]).unwrap(); // warm up
        let t = Instant::now();
        embedder.embed_token_ids(&inputs).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let tokens: usize = inputs.iter().map(Vec::len).sum();
        let texts: Vec<String> = inputs.iter().map(|i| embedder.tokenizer().decode(i, true).unwrap()).collect();
        let t = Instant::now();
        let again = embedder.tokenizer().encode_batch(texts, true).unwrap();
        let tok_secs = t.elapsed().as_secs_f64();
        let retokenized: usize = again.iter().map(|e| e.len()).sum();
        println!(
            "{len:>4}-token inputs: {:>6.0} tokens/s ({} inputs, {secs:.2}s); tokenizing their text alone {:>8.0} tokens/s ({:.1}% of the forward pass's time)",
            tokens as f64 / secs,
            inputs.len(),
            retokenized as f64 / tok_secs,
            100.0 * tok_secs / secs
        );
    }
}

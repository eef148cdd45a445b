//! How far ask's ways of running a quantized model move its next-token
//! distributions from the same weights dequantized to f32, over every
//! position of real text: KL divergence (mean, median, p99, max) and how
//! often the most likely token is f32's. The ways: whole prompts through
//! this CPU's prompt kernels (candle's VNNI tiles, or ask's AVX2 tiles
//! under `benches/avx2-only`), and a few tokens at a time through the
//! decode kernels.
//!
//!     prefill-drift MODEL.gguf CORPUS.jsonl [PROMPTS] [TOKENS]
//!     benches/avx2-only prefill-drift MODEL.gguf CORPUS.jsonl   # the AVX2 path
//!
//! Defaults: 6 prompts of 512 tokens, consecutive passages of CORPUS
//! (BEIR `corpus.jsonl`: one `{"text": …}` per line).

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: prefill-drift MODEL.gguf CORPUS.jsonl [PROMPTS] [TOKENS]");
        std::process::exit(2);
    }
    let model = std::path::Path::new(&args[1]);
    let prompts: usize = args.get(3).map_or(6, |n| n.parse().expect("PROMPTS"));
    let len: usize = args.get(4).map_or(512, |n| n.parse().expect("TOKENS"));
    let mut r = std::io::BufReader::new(std::fs::File::open(model).expect("model"));
    let ct = gguf_file::Content::read(&mut r).expect("GGUF");
    let tokenizer = tokenizers::Tokenizer::from_gguf(&ct).expect("tokenizer in the GGUF");
    let corpus = std::fs::read_to_string(&args[2]).expect("corpus");
    let mut texts = corpus.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).map(|v| v["text"].as_str().unwrap_or_default().to_owned());
    // Consecutive passages until `len` tokens, `prompts` times.
    let mut inputs: Vec<Vec<u32>> = Vec::new();
    for _ in 0..prompts {
        let mut ids = Vec::new();
        while ids.len() < len {
            let text = texts.next().expect("the corpus ran out");
            ids.extend(tokenizer.encode(text.as_str(), false).expect("tokenize").get_ids());
        }
        ids.truncate(len);
        inputs.push(ids);
    }
    for d in ask_engine::bench::drift(model, &inputs).expect("run") {
        let [mean, p50, p99, max] = d.kl;
        println!("{}: KL mean {mean:.5}, p50 {p50:.5}, p99 {p99:.4}, max {max:.3}; top-1 agreement {:.4} ({} positions)", d.way, d.top1, d.positions);
    }
}

//! Generation speed of a GGUF model: prefill tokens/s on a 512- and a
//! 2048-token prompt (real text from msmarco-5k) and decode tokens/s over
//! 128 greedy tokens.
//!
//!     cargo run --release -p ask-model --example generate-bench -- MODEL.gguf CORPUS.jsonl

use std::time::Instant;

use ask_model::{Generator, SamplingParams};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let t = Instant::now();
    let mut model = Generator::load(std::path::Path::new(&args[1])).expect("model");
    println!("{} ({}): loaded in {:.2}s", model.name, model.architecture, t.elapsed().as_secs_f64());
    let corpus = std::fs::read_to_string(&args[2]).expect("corpus");
    let text: String = corpus
        .split('\n')
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["text"].as_str().unwrap_or_default().to_owned())
        .take(400)
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = text.split_whitespace().collect();
    for target in [512usize, 2048] {
        // Grow the prompt by words until it has the target token count.
        let (mut lo, mut hi) = (1, words.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if model.count_tokens(&words[..mid].join(" ")).unwrap() <= target { lo = mid } else { hi = mid - 1 }
        }
        let prompt = words[..lo].join(" ");
        let params = SamplingParams { max_tokens: 128, repeat_penalty: 1.0, ..Default::default() };
        let timings = model.generate(&prompt, &params, |_| true).unwrap();
        println!(
            "pp{target}: prefill {:.0} tokens/s ({} tokens); decode {:.1} tokens/s ({} tokens)",
            timings.prefill_tokens_per_s, timings.prompt_tokens, timings.decode_tokens_per_s, timings.generated_tokens
        );
    }
    let prompt = model.chat_prompt("You are a helpful assistant.", "What is the capital of France? Answer in one word.").unwrap();
    print!("chat: ");
    let params = SamplingParams { max_tokens: 24, ..Default::default() };
    model.generate(&prompt, &params, |s| { print!("{s}"); true }).unwrap();
    println!();
}

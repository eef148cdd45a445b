//! Generation speed of a GGUF model, measured the way llama.cpp's
//! llama-bench does: prefill tokens/s on a 512- and a 2048-token prompt
//! (real text from msmarco-5k) and decode tokens/s over 128 greedy tokens
//! from an empty context (tg128). Each figure is the mean tokens/s of
//! `RUNS` runs after a warm-up, the statistic llama-bench reports (its
//! `avg_ts`), so that the two compare like for like; the warm-up's own
//! prefill rate is printed beside it (what a fresh `ask query` gets).
//!
//!     generate-bench MODEL.gguf CORPUS.jsonl [RUNS] [TESTS]
//!
//! TESTS picks some of pp512,pp2048,tg128,chat (all by default), for
//! profiling one of them.

use std::time::Instant;

use ask_engine::{Generator, SamplingParams};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(3).map(|r| r.parse().expect("RUNS")).unwrap_or(3);
    let tests = args.get(4).map(String::as_str).unwrap_or("pp512,pp2048,tg128,chat");
    let wanted = |test: &str| tests.split(',').any(|t| t == test);
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
    let prompt_of = |model: &Generator, target: usize| {
        // Grow the prompt by words until it has the target token count.
        let (mut lo, mut hi) = (1, words.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if model.count_tokens(&words[..mid].join(" ")).unwrap() <= target { lo = mid } else { hi = mid - 1 }
        }
        words[..lo].join(" ")
    };
    // The mean rate of `runs` runs after a warm-up, and the last run's
    // timings; each run prefills the whole prompt, as a new one would be.
    let mean = |model: &mut Generator, prompt: &str, max_tokens: usize, rate: fn(&ask_engine::Timings) -> f64| {
        let params = SamplingParams { max_tokens, repeat_penalty: 1.0, ignore_eos: true, ..Default::default() };
        let run = |model: &mut Generator| {
            model.forget();
            model.generate(prompt, &params, |_| true).unwrap()
        };
        let first = rate(&run(model)); // warm-up
        let all: Vec<_> = (0..runs).map(|_| run(model)).collect();
        (all.iter().map(rate).sum::<f64>() / all.len() as f64, first, all.into_iter().last().unwrap())
    };
    for target in [512usize, 2048] {
        if !wanted(&format!("pp{target}")) {
            continue;
        }
        let prompt = prompt_of(&model, target);
        let (rate, first, t) = mean(&mut model, &prompt, 1, |t| t.prefill_tokens_per_s);
        println!("pp{target}: {rate:.1} tokens/s ({} tokens; the process's first run {first:.1})", t.prompt_tokens);
    }
    // tg128: 128 tokens after a one-token prompt (the count is printed, in
    // case the model ends its text sooner).
    if wanted("tg128") {
        let (rate, _, t) = mean(&mut model, "The", 128, |t| t.decode_tokens_per_s);
        println!("tg128: {rate:.1} tokens/s ({} tokens)", t.generated_tokens);
    }
    if !wanted("chat") {
        return;
    }
    let prompt = model.chat_prompt("You are a helpful assistant.", "What is the capital of France? Answer in one word.").unwrap();
    print!("chat: ");
    let params = SamplingParams { max_tokens: 24, ..Default::default() };
    model.generate(&prompt, &params, |s| { print!("{s}"); true }).unwrap();
    println!();
}

//! Text generation with quantized GGUF models, on ask's own decoder
//! ([`crate::decoder`]) over candle's tensors and ask's kernels.
//!
//! The family is chosen by the file's `general.architecture` (llama, qwen2,
//! qwen3, gemma3, phi3), never by its name. The tokenizer comes from the
//! GGUF's own `tokenizer.ggml.*` metadata (byte-level BPE), or from a
//! `tokenizer.json` beside the file; the chat template from
//! `tokenizer.chat_template`, rendered with minijinja. Text is streamed as
//! it is generated, decoded so that no UTF-8 character is ever split.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use crate::decoder::{Decoder, VERIFY_ROWS};
use crate::ModelError;

const SUPPORTED: &str = "ask runs llama (Llama 2/3, Mistral, SmolLM2), qwen2, qwen3, gemma3 and phi3 GGUF files";

/// Longest context ask uses, whatever the model allows: RAG prompts are a
/// few thousand tokens, and a longer window only costs memory.
pub const MAX_CONTEXT: usize = 4096;

/// How to pick each next token.
#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling threshold.
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Random seed, for reproducible sampling.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Penalty for repeating recent tokens (1.0 = none).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Keep going past the model's end-of-turn tokens and past a
    /// repetition loop, up to `max_tokens` (benchmarks and tests that need
    /// a generation of known length).
    pub ignore_eos: bool,
    /// Prompt-lookup decoding: tokens drafted from the text so far and
    /// checked in one pass (greedy decoding only). The text is the same
    /// token for token either way.
    pub lookup: Lookup,
}

/// How many tokens prompt-lookup decoding drafts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lookup {
    /// [`AUTO_LOOKUP_TOKENS`] where the model's decode kernels check
    /// several rows for little more than one ([`Decoder::drafts_pay`]),
    /// none elsewhere.
    #[default]
    Auto,
    /// Up to this many, always (0 = off).
    Tokens(usize),
}

impl std::str::FromStr for Lookup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Lookup::Auto),
            n => n.parse().map(Lookup::Tokens).map_err(|_| format!("`{n}` is neither `auto` nor a number of tokens")),
        }
    }
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Auto => f.write_str("auto"),
            Lookup::Tokens(n) => write!(f, "{n}"),
        }
    }
}

/// A generation that repeats this many of its own tokens verbatim is in a
/// loop (small models fall into them under greedy decoding): it stops, and
/// the repeated tokens are not shown. About 25 words: lists and quoted
/// phrases repeat less than that.
pub const LOOP_TOKENS: usize = 32;

/// Why a generation ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// The model ended its turn.
    #[default]
    End,
    /// `max_tokens`, or the context window, was reached.
    Limit,
    /// The text began to repeat itself ([`LOOP_TOKENS`]).
    Repetition,
    /// The caller asked to stop (Ctrl-C, a closed pipe).
    Interrupted,
}

/// The default random seed of sampling (`--seed`): any fixed number makes
/// a sampled answer repeatable; this one is the speed of light in m/s.
pub const SEED: u64 = 299_792_458;

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_p: None, top_k: None, seed: SEED, max_tokens: 512, repeat_penalty: 1.1, repeat_last_n: 64, ignore_eos: false, lookup: Lookup::Auto }
    }
}

/// Counts and rates of one generation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Prompt processing speed.
    pub prefill_tokens_per_s: f64,
    /// Generation speed.
    pub decode_tokens_per_s: f64,
    /// From the call to the first piece of text handed on: prefill and
    /// the first token.
    pub first_token_ms: f64,
    /// Why it ended.
    pub stop: Stop,
    /// Prompt-lookup decoding: tokens drafted.
    pub drafted_tokens: usize,
    /// Of those, the ones the model went on to choose.
    pub accepted_tokens: usize,
    /// Prompt tokens not prefilled, because the KV cache already held them:
    /// the opening an earlier prompt shared (in this process, or kept on
    /// disk by [`Generator::keep_opening`]).
    pub cached_tokens: usize,
}

/// Tokens [`Lookup::Auto`] drafts at a time: on the AVX-512 VNNI kernels,
/// 3 drafted gained more decode speed than 1 on the shared QA set. A draft
/// of g tokens makes a pass cost about 1 + c·g passes of one row (c about a
/// third there) and saves as many passes as it has tokens accepted.
/// Drafting goes on for the whole answer: answers open in their own words
/// and copy the passages later, so stopping early lost more than it saved
/// (figures in docs/design.md, Generation).
pub const AUTO_LOOKUP_TOKENS: usize = 3;

/// Longest run of the text's last tokens that prompt lookup matches.
const LOOKUP_NGRAM: usize = 3;

/// Prompt-lookup drafting: the tokens that followed the latest earlier
/// occurrence of the last n tokens of `seq` (n from [`LOOKUP_NGRAM`] down
/// to 2), at most `k` of them; none when the tail occurred nowhere before.
/// Answers from passages copy names, numbers and phrases of the prompt,
/// which this finds without a draft model.
fn draft(seq: &[u32], k: usize) -> &[u32] {
    for n in (2..=LOOKUP_NGRAM).rev() {
        if k == 0 || seq.len() <= n {
            continue;
        }
        let tail = &seq[seq.len() - n..];
        if let Some(start) = (0..seq.len() - n).rev().find(|&i| &seq[i..i + n] == tail) {
            let from = start + n;
            return &seq[from..(from + k).min(seq.len())];
        }
    }
    &[]
}

/// A loaded generative model with its tokenizer and chat template.
pub struct Generator {
    weights: Decoder,
    tokenizer: Tokenizer,
    template: Option<String>,
    /// `general.architecture` of the file.
    pub architecture: String,
    /// The file's name, for reports.
    pub name: String,
    stop: Vec<u32>,
    bos: String,
    eos: String,
    context: usize,
    device: Device,
    /// The tokens whose keys and values the decoder's cache holds, in order
    /// from position 0: what the next prompt need not prefill again.
    cached: Vec<u32>,
    /// Where the opening every prompt shares is kept between processes.
    opening: Option<Opening>,
    /// The file, its size and time, for [`Opening`]'s key.
    source: String,
}

/// The keys and values of the opening every prompt of a caller shares (the
/// chat template's system message), kept in a file between processes: a
/// fresh `ask query` then prefills only what follows it. The file is this
/// model's only one (named by its path) and holds its key: a cache, which
/// another model file, another ask, another opening text or another CPU
/// kernel path (whose sums differ in the last bits) rewrites rather than
/// reads.
struct Opening {
    ids: Vec<u32>,
    key: String,
    file: PathBuf,
    /// Read from or written to `file` already (or failed to be): not tried again.
    done: bool,
}

/// FNV-1a: a file name that stays the same across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// How many tokens `a` and `b` share from the start.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid { path: path.to_path_buf(), message: message.to_string() }
}

fn meta_str(ct: &gguf_file::Content, key: &str) -> Option<String> {
    ct.metadata.get(key).and_then(|v| v.to_string().ok()).cloned()
}

fn meta_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl Generator {
    /// Loads a GGUF file on the CPU.
    pub fn load(path: &Path) -> Result<Generator, ModelError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::Missing { path: path.into(), what: "GGUF model" },
            _ => invalid(path, e),
        })?;
        let mut reader = BufReader::new(file);
        let ct = gguf_file::Content::read(&mut reader).map_err(|e| invalid(path, format!("not a readable GGUF file: {e}")))?;
        let arch = meta_str(&ct, "general.architecture").ok_or_else(|| invalid(path, "no general.architecture in the GGUF metadata"))?;
        let context = meta_u32(&ct, &format!("{arch}.context_length")).map(|c| c as usize).unwrap_or(2048).min(MAX_CONTEXT);
        let tokenizer = load_tokenizer(path, &ct)?;
        let template = meta_str(&ct, "tokenizer.chat_template");
        let token_text = |key: &str| meta_u32(&ct, key).and_then(|id| tokenizer.id_to_token(id));
        let bos = token_text("tokenizer.ggml.bos_token_id").unwrap_or_default();
        let eos = token_text("tokenizer.ggml.eos_token_id").unwrap_or_default();
        // End of turn: the declared EOS plus the chat markers families use.
        let mut stop: Vec<u32> = meta_u32(&ct, "tokenizer.ggml.eos_token_id").into_iter().collect();
        for marker in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>"] {
            if let Some(id) = tokenizer.token_to_id(marker) {
                stop.push(id);
            }
        }
        let device = Device::Cpu;
        if !crate::decoder::ARCHITECTURES.contains(&arch.as_str()) {
            return Err(ModelError::Unsupported { path: path.into(), arch, supported: SUPPORTED });
        }
        let weights = Decoder::from_gguf(&ct, &mut reader, &arch, context)
            .map_err(|e| invalid(path, format!("cannot load {arch} weights: {e}")))?;
        weights.warm()?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let source = {
            let meta = std::fs::metadata(path).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            format!("{} {} bytes {:?}", full.display(), meta.map_or(0, |m| m.len()), mtime)
        };
        Ok(Generator { weights, tokenizer, template, architecture: arch, name, stop, bos, eos, context, device, cached: Vec::new(), opening: None, source })
    }

    /// Keeps the keys and values of `text`, the opening every prompt of the
    /// caller begins with (see `prompt::opening`), in a file in `dir`: the
    /// first prompt that begins with it writes the file, and in a later
    /// process, the first prompt that begins with it reads it instead of
    /// prefilling those tokens. A file that cannot be read or written only
    /// costs the prefill it would have saved. Kept again, the same opening
    /// is neither read nor written again.
    pub fn keep_opening(&mut self, text: &str, dir: &Path) -> Result<(), ModelError> {
        let ids = self.tokenizer.encode(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?.get_ids().to_vec();
        let key = format!("ask {} | {} | {} | {:?}", env!("CARGO_PKG_VERSION"), self.source, crate::quant::kernel_path(), ids);
        let file = dir.join(format!("{:016x}.safetensors", fnv1a(self.source.as_bytes())));
        // The same opening again (each turn of a session) is kept as it is.
        if self.opening.as_ref().is_some_and(|o| o.key == key && o.file == file) {
            return Ok(());
        }
        self.opening = Some(Opening { ids, key, file, done: false });
        Ok(())
    }

    /// Reads `text`, the beginning of a prompt still to come, into the KV
    /// cache after what the cache holds of it already (the kept opening
    /// first), so that the prompt's prefill starts where `text` ends: for a
    /// caller that knows a prompt's beginning before its end (the earlier
    /// turns of a conversation, while the next question is searched or
    /// typed). Returns how many tokens it read; none when `text` would not
    /// leave room in the context.
    pub fn prefill(&mut self, text: &str) -> Result<usize, ModelError> {
        let ids = self.tokenizer.encode(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?.get_ids().to_vec();
        if ids.len() + 1 >= self.context {
            return Ok(0);
        }
        let Some((reuse, _)) = self.extend(&ids, 0)? else { return Ok(0) };
        self.write_opening();
        Ok(ids.len() - reuse)
    }

    /// Runs `ids` through the model after what the KV cache holds of them
    /// already (the kept opening read first into an empty cache), and at
    /// least their last `fresh` tokens; from position 0, the decoder starts
    /// its KV cache anew. Returns how many tokens were reused and the last
    /// position's logits; None when nothing was to run (`fresh` 0 and the
    /// cache held them all).
    fn extend(&mut self, ids: &[u32], fresh: usize) -> Result<Option<(usize, Tensor)>, ModelError> {
        if self.cached.is_empty() {
            self.read_opening();
        }
        let reuse = common_prefix(&self.cached, ids).min(ids.len().saturating_sub(fresh));
        if fresh == 0 && reuse == ids.len() {
            return Ok(None);
        }
        self.cached.clear();
        self.weights.truncate(reuse);
        let input = Tensor::new(&ids[reuse..], &self.device)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, reuse)?;
        self.cached = ids.to_vec();
        Ok(Some((reuse, logits)))
    }

    /// Forgets what the KV cache holds: the next prompt is prefilled whole
    /// (benchmarks of prefill).
    pub fn forget(&mut self) {
        self.cached.clear();
        self.weights.clear_cache();
    }

    /// Fills the empty KV cache from the opening's file, if it is this
    /// model's and this opening's.
    fn read_opening(&mut self) {
        let Some(o) = self.opening.as_mut().filter(|o| !o.done) else { return };
        let Ok(mut t) = candle_core::safetensors::load(&o.file, &Device::Cpu) else { return };
        let key_matches = t.remove("key").and_then(|k| k.to_vec1::<u8>().ok()).is_some_and(|k| k == o.key.as_bytes());
        let Some(tokens) = t.remove("tokens").and_then(|k| k.to_vec1::<u32>().ok()).filter(|_| key_matches) else { return };
        let mut kv = Vec::new();
        while let (Some(k), Some(v)) = (t.remove(&format!("k.{}", kv.len())), t.remove(&format!("v.{}", kv.len()))) {
            kv.push((k, v));
        }
        if kv.first().and_then(|(k, _)| k.dim(2).ok()) == Some(tokens.len()) && self.weights.restore(kv).is_ok() {
            self.cached = tokens;
            o.done = true;
        }
    }

    /// Writes the opening's keys and values, which the cache holds after a
    /// prompt that begins with it, unless read or written already. Written
    /// to a temporary file and renamed, so that a reader never sees half.
    fn write_opening(&mut self) {
        let Some(o) = self.opening.as_mut().filter(|o| !o.done) else { return };
        // Its last token may merge with what follows it in a prompt.
        let n = common_prefix(&o.ids, &self.cached);
        if n == 0 {
            return;
        }
        o.done = true;
        let Ok(kv) = self.weights.snapshot(n) else { return };
        let key = o.key.as_bytes();
        let (Ok(key), Ok(tokens)) = (Tensor::new(key, &Device::Cpu), Tensor::new(&self.cached[..n], &Device::Cpu)) else { return };
        let mut t = std::collections::HashMap::from([("key".to_owned(), key), ("tokens".to_owned(), tokens)]);
        for (i, (k, v)) in kv.into_iter().enumerate() {
            t.insert(format!("k.{i}"), k);
            t.insert(format!("v.{i}"), v);
        }
        let Some(dir) = o.file.parent() else { return };
        let tmp = dir.join(format!(".{}.{}.tmp", o.file.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
        let written = std::fs::create_dir_all(dir).is_ok() && candle_core::safetensors::save(&t, &tmp).is_ok() && std::fs::rename(&tmp, &o.file).is_ok();
        if !written {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Tokens the model can attend to (capped at [`MAX_CONTEXT`]).
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// The model's tokenizer (to cut text into pieces that fit).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Number of tokens `text` encodes to.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.tokenizer.encode_fast(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?.len())
    }

    /// The prompt for a system instruction and a user message, through the
    /// model's chat template (or ChatML when the file has none).
    pub fn chat_prompt(&self, system: &str, user: &str) -> Result<String, ModelError> {
        self.conversation_prompt(&[Turn { role: "system", content: system }, Turn { role: "user", content: user }])
    }

    /// The prompt for a whole conversation (a chat client's messages),
    /// ending where the assistant's next turn begins.
    pub fn conversation_prompt(&self, turns: &[Turn]) -> Result<String, ModelError> {
        let Some(template) = &self.template else {
            let mut out = String::new();
            for t in turns {
                out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", t.role, t.content));
            }
            out.push_str("<|im_start|>assistant\n");
            return Ok(out);
        };
        render_template(template, turns, &self.bos, &self.eos)
    }

    /// Generates a continuation of `prompt`, calling `on_text` with each
    /// piece of decoded text as soon as it is complete; `on_text` returning
    /// false stops generation (Ctrl-C, a closed pipe).
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Timings, ModelError> {
        let tok = |e: tokenizers::Error| ModelError::Tokenizer(e.to_string());
        let prompt_ids = self.tokenizer.encode(prompt, false).map_err(tok)?.get_ids().to_vec();
        if prompt_ids.len() + 1 >= self.context {
            return Err(ModelError::PromptTooLong { tokens: prompt_ids.len(), context: self.context });
        }
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = params.temperature;
            match (params.top_k, params.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut timings = Timings { prompt_tokens: prompt_ids.len(), ..Default::default() };

        // Prefill what the cache does not hold already (at least the last
        // token, whose logits come next).
        let start = Instant::now();
        let (reuse, logits) = self.extend(&prompt_ids, 1)?.expect("fresh tokens always run");
        timings.cached_tokens = reuse;
        timings.prefill_tokens_per_s = (prompt_ids.len() - reuse) as f64 / start.elapsed().as_secs_f64();
        self.write_opening();

        let mut all = prompt_ids.clone();
        let mut stream = TokenStream::default();
        // Decodes the tokens the guard lets through and hands on the text;
        // false when the caller asked to stop.
        let mut first_text: Option<f64> = None;
        let mut show = |tokens: &[u32]| -> Result<bool, ModelError> {
            for &t in tokens {
                if let Some(text) = stream.push(&self.tokenizer, t)? {
                    first_text.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1000.0);
                    if !on_text(&text) {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
        let mut guard = RepeatGuard::new(if params.ignore_eos { usize::MAX } else { LOOP_TOKENS });
        let budget = params.max_tokens.min(self.context - prompt_ids.len() - 1);
        // Drafts are checked by greedy choice, on matrices whose rows come
        // out the same in one pass as one at a time.
        let tokens = match params.lookup {
            Lookup::Tokens(n) => n,
            Lookup::Auto if self.weights.drafts_pay() => AUTO_LOOKUP_TOKENS,
            Lookup::Auto => 0,
        };
        let lookup = if params.temperature <= 0.0 && self.weights.rows_exact() { tokens.min(VERIFY_ROWS - 1) } else { 0 };
        // Logits for the coming positions: the next token's first, then
        // one for each drafted token (whose K/V are in the cache) after it.
        let mut rows: std::collections::VecDeque<Tensor> = [logits].into();
        let mut drafted: std::collections::VecDeque<u32> = Default::default();
        let decode_start = Instant::now();
        timings.stop = Stop::Limit;
        for i in 0..budget {
            let mut logits = rows.pop_front().expect("logits for the next position");
            if params.repeat_penalty != 1.0 {
                let from = all.len().saturating_sub(params.repeat_last_n);
                logits = candle_transformers::utils::apply_repeat_penalty(&logits, params.repeat_penalty, &all[from..])?;
            }
            let next = sampler.sample(&logits)?;
            match drafted.pop_front() {
                Some(d) if d == next => timings.accepted_tokens += 1,
                // The rows after a wrong draft were for other text.
                _ => rows.clear(),
            }
            if self.stop.contains(&next) && !params.ignore_eos {
                timings.stop = Stop::End;
                break;
            }
            all.push(next);
            timings.generated_tokens += 1;
            let Some(shown) = guard.push(next) else {
                timings.stop = Stop::Repetition;
                break;
            };
            if !show(shown)? {
                timings.stop = Stop::Interrupted;
                break;
            }
            if i + 1 == budget {
                break;
            }
            if rows.is_empty() {
                // The cache holds every token but `next` (and no rejected
                // draft): run it, and a draft of what may follow.
                drafted.clear();
                self.weights.truncate(all.len() - 1);
                let guess = draft(&all, lookup.min(budget - i - 2));
                let input: Vec<u32> = std::iter::once(next).chain(guess.iter().copied()).collect();
                let ids = Tensor::new(input.as_slice(), &self.device)?.unsqueeze(0)?;
                if guess.is_empty() {
                    rows.push_back(self.weights.forward(&ids, all.len() - 1)?);
                } else {
                    let each = self.weights.forward_each(&ids, all.len() - 1)?;
                    for r in 0..input.len() {
                        rows.push_back(each.get(r)?);
                    }
                    timings.drafted_tokens += guess.len();
                    drafted.extend(guess.iter().copied());
                }
            }
        }
        // Tokens held back as a possible repeat that never became a loop.
        if matches!(timings.stop, Stop::End | Stop::Limit) && !show(guard.rest())? {
            timings.stop = Stop::Interrupted;
        }
        // Every position before the last token holds its token (a rejected
        // draft's is overwritten before anything reads past it); so does
        // the whole prompt's.
        let keep = (all.len() - 1).max(prompt_ids.len()).min(self.weights.cached());
        self.weights.truncate(keep);
        all.truncate(keep);
        self.cached = all;
        timings.first_token_ms = first_text.unwrap_or_else(|| start.elapsed().as_secs_f64() * 1000.0);
        let decode_secs = decode_start.elapsed().as_secs_f64();
        timings.decode_tokens_per_s = timings.generated_tokens as f64 / decode_secs.max(1e-9);
        Ok(timings)
    }
}

fn load_tokenizer(path: &Path, ct: &gguf_file::Content) -> Result<Tokenizer, ModelError> {
    let beside: PathBuf = path.with_file_name("tokenizer.json");
    if beside.exists() {
        return Tokenizer::from_file(&beside).map_err(|e| invalid(&beside, e));
    }
    let model = meta_str(ct, "tokenizer.ggml.model").unwrap_or_default();
    let built = if model == "llama" {
        sentencepiece_from_gguf(ct).map_err(|e| e.to_string())
    } else {
        Tokenizer::from_gguf(ct).map_err(|e| e.to_string())
    };
    built.map_err(|e| invalid(path, format!("cannot build its tokenizer ({e}); put the model's tokenizer.json beside the GGUF file")))
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`: Llama 2,
/// Gemma, Phi-3, Mistral) as a Hugging Face tokenizer: pieces with their
/// scores, "▁" for spaces, byte fallback, control tokens matched whole.
///
/// The pieces are segmented by the highest total score (unigram Viterbi).
/// For SentencePiece BPE vocabularies, whose scores rank the merges, this
/// nearly always gives BPE's result but is not guaranteed to; a
/// `tokenizer.json` beside the GGUF file is used instead when present.
fn sentencepiece_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer, String> {
    use tokenizers::decoders::{byte_fallback::ByteFallback, fuse::Fuse, sequence::Sequence, strip::Strip, DecoderWrapper};
    use tokenizers::models::unigram::Unigram;
    use tokenizers::normalizers::{prepend::Prepend, replace::Replace, utils::Sequence as Normalizers, NormalizerWrapper};
    use tokenizers::AddedToken;

    let array = |key: &str| ct.metadata.get(key).and_then(|v| v.to_vec().ok()).ok_or_else(|| format!("no {key} in the GGUF metadata"));
    let tokens: Vec<String> = array("tokenizer.ggml.tokens")?.iter().map(|v| v.to_string().cloned().unwrap_or_default()).collect();
    let scores: Vec<f64> = match array("tokenizer.ggml.scores") {
        Ok(s) => s.iter().map(|v| v.to_f32().unwrap_or(0.0) as f64).collect(),
        Err(_) => vec![0.0; tokens.len()],
    };
    // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    let types: Vec<i32> = match array("tokenizer.ggml.token_type") {
        Ok(t) => t.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
        Err(_) => vec![1; tokens.len()],
    };
    let unk = meta_u32(ct, "tokenizer.ggml.unknown_token_id").map(|u| u as usize).or_else(|| types.iter().position(|&t| t == 2));
    let vocab: Vec<(String, f64)> = tokens.iter().cloned().zip(scores).collect();
    let model = Unigram::from(vocab, unk, true).map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);
    let add_prefix = ct.metadata.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.to_bool().ok()).unwrap_or(true);
    let mut normalizers = Vec::new();
    if add_prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
    }
    normalizers.push(NormalizerWrapper::Replace(Replace::new(" ", "▁").map_err(|e| e.to_string())?));
    tokenizer.with_normalizer(Some(Normalizers::new(normalizers))).map_err(|e| e.to_string())?;
    let mut decoders = vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| e.to_string())?),
        DecoderWrapper::ByteFallback(ByteFallback::default()),
        DecoderWrapper::Fuse(Fuse::default()),
    ];
    if add_prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    tokenizer.with_decoder(Some(Sequence::new(decoders)));
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == 3 || t == 4)
        .map(|(tok, &t)| AddedToken::from(tok.clone(), t == 3))
        .collect();
    tokenizer.add_special_tokens(special).map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

/// One message of a conversation: its role (`system`, `user`,
/// `assistant`) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Turn<'a> {
    /// Who speaks.
    pub role: &'a str,
    /// What they say.
    pub content: &'a str,
}

/// Renders a Hugging Face chat template for a conversation, with the
/// assistant's turn opened after it.
pub fn render_template(template: &str, turns: &[Turn], bos: &str, eos: &str) -> Result<String, ModelError> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    let err = |e: minijinja::Error| ModelError::Tokenizer(format!("chat template: {e}"));
    env.add_template("chat", template).map_err(err)?;
    let messages: Vec<minijinja::Value> =
        turns.iter().map(|t| minijinja::context! { role => t.role, content => t.content }).collect();
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    };
    env.get_template("chat").map_err(err)?.render(ctx).map_err(err)
}

/// Watches generated tokens for a loop. A token that continues a run
/// matching earlier output is held back; when the run breaks, the held
/// tokens are released (so ordinary text waits at most a few tokens), and
/// when it reaches `limit` tokens the generation is in a loop.
struct RepeatGuard {
    tokens: Vec<u32>,
    /// End positions of the earlier occurrences of the current run.
    ends: Vec<usize>,
    /// Length of the current run: the last `run` tokens occur earlier.
    run: usize,
    /// Tokens before this position have been released.
    released: usize,
    limit: usize,
}

impl RepeatGuard {
    fn new(limit: usize) -> RepeatGuard {
        RepeatGuard { tokens: Vec::new(), ends: Vec::new(), run: 0, released: 0, limit }
    }

    /// Adds a token; returns the tokens that may be shown now, or None when
    /// the last `limit` tokens repeat earlier ones (the held tokens, the
    /// repeat, are then never released).
    fn push(&mut self, token: u32) -> Option<&[u32]> {
        let n = self.tokens.len();
        let extended: Vec<usize> = self.ends.iter().map(|&j| j + 1).filter(|&j| j < n && self.tokens[j] == token).collect();
        if extended.is_empty() {
            // A new run, when the token occurred before.
            self.ends = (0..n).filter(|&j| self.tokens[j] == token).collect();
            self.run = usize::from(!self.ends.is_empty());
        } else {
            self.ends = extended;
            self.run += 1;
        }
        self.tokens.push(token);
        if self.run >= self.limit {
            return None;
        }
        let from = self.released;
        self.released = self.tokens.len() - self.run;
        Some(&self.tokens[from..self.released])
    }

    /// Everything not yet released.
    fn rest(&mut self) -> &[u32] {
        let from = std::mem::replace(&mut self.released, self.tokens.len());
        &self.tokens[from..]
    }
}

/// Incremental decoding: text is released only when the tokens so far
/// decode to complete characters, so a multi-byte character split across
/// byte-level tokens is never printed in halves.
#[derive(Default)]
struct TokenStream {
    tokens: Vec<u32>,
    printed: usize,
}

impl TokenStream {
    fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> Result<Option<String>, ModelError> {
        self.tokens.push(token);
        let text = tokenizer.decode(&self.tokens, true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        if text.ends_with('\u{FFFD}') || text.len() <= self.printed || !text.is_char_boundary(self.printed) {
            return Ok(None);
        }
        let new = text[self.printed..].to_owned();
        self.printed = text.len();
        Ok(Some(new))
    }
}

#[cfg(test)]
mod tests;

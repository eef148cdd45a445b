//! Tests of `generate`: repetition stops, the prompt cache, lookup drafts, chat templates and GGUF tokenizers, some on the real small models.

use super::*;

/// Feeds `tokens` to a guard; returns what it released, in order, and
/// whether it found a loop.
fn guarded(tokens: &[u32], limit: usize) -> (Vec<u32>, bool) {
    let mut g = RepeatGuard::new(limit);
    let mut shown = Vec::new();
    for &t in tokens {
        match g.push(t) {
            Some(out) => shown.extend_from_slice(out),
            None => return (shown, true),
        }
    }
    shown.extend_from_slice(g.rest());
    (shown, false)
}

#[test]
fn a_loop_is_stopped_before_its_repeat_is_shown() {
    // A sentence of 5 tokens, then the model says it again and again.
    let sentence = [10, 11, 12, 13, 14];
    let looping: Vec<u32> = sentence.iter().cycle().take(40).copied().collect();
    let (shown, looped) = guarded(&looping, 8);
    assert!(looped);
    assert_eq!(shown, sentence, "only the first saying is shown");
    // Text that reuses words, and even a repeat shorter than the limit,
    // comes through whole.
    let text = [1, 2, 3, 1, 4, 2, 3, 5, 1, 2, 3, 1, 6, 7];
    assert_eq!(guarded(&text, 8), (text.to_vec(), false));
    // One token over and over is a loop too.
    let (shown, looped) = guarded(&[9; 20], 8);
    assert!(looped);
    assert_eq!(shown, [9]);
}

#[test]
fn held_tokens_are_released_as_soon_as_the_repeat_breaks() {
    let mut g = RepeatGuard::new(8);
    for t in [1, 2, 3] {
        assert_eq!(g.push(t), Some(&[t][..]));
    }
    // 1, 2 repeat the start: held.
    assert_eq!(g.push(1), Some(&[][..]));
    assert_eq!(g.push(2), Some(&[][..]));
    // 4 breaks the run: all three come out together.
    assert_eq!(g.push(4), Some(&[1, 2, 4][..]));
}

#[test]
fn a_prompt_too_long_for_the_context_is_its_own_error() {
    let mut model = Generator::load(&crate::fetched_model("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let prompt = "harbour crane ".repeat(MAX_CONTEXT);
    match model.generate(&prompt, &SamplingParams::default(), |_| true) {
        Err(ModelError::PromptTooLong { tokens, context }) => assert!(tokens > context && context == MAX_CONTEXT, "{tokens} {context}"),
        other => panic!("{:?}", other.map(|t| t.generated_tokens)),
    }
}

#[test]
fn a_prompt_prefills_only_what_the_cache_does_not_hold() {
    let mut model = Generator::load(&crate::fetched_model("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let params = SamplingParams { max_tokens: 4, ..Default::default() };
    let (a, b) = ("The harbour crane lifts containers onto the ship at dawn", "The harbour crane lifts containers onto the barge at dusk");
    let ids = |s: &str| model.tokenizer().encode(s, false).unwrap().get_ids().to_vec();
    let (ia, ib) = (ids(a), ids(b));
    let shared = ia.iter().zip(&ib).take_while(|(x, y)| x == y).count();
    assert!(shared >= 5 && shared < ib.len(), "{ia:?} {ib:?}");
    assert_eq!(model.generate(a, &params, |_| true).unwrap().cached_tokens, 0);
    assert_eq!(model.generate(b, &params, |_| true).unwrap().cached_tokens, shared);
    // The same prompt again: all but the last token, whose logits come next.
    assert_eq!(model.generate(b, &params, |_| true).unwrap().cached_tokens, ib.len() - 1);
    model.forget();
    assert_eq!(model.generate(b, &params, |_| true).unwrap().cached_tokens, 0);
}

#[test]
fn lookup_reads_auto_or_a_count() {
    assert_eq!("auto".parse::<Lookup>(), Ok(Lookup::Auto));
    assert_eq!("0".parse::<Lookup>(), Ok(Lookup::Tokens(0)));
    assert_eq!("3".parse::<Lookup>(), Ok(Lookup::Tokens(3)));
    assert!("three".parse::<Lookup>().unwrap_err().contains("`three`"));
    assert_eq!(Lookup::Auto.to_string(), "auto");
    assert_eq!(Lookup::Tokens(2).to_string(), "2");
    assert_eq!(SamplingParams::default().lookup, Lookup::Auto);
}

#[test]
fn drafts_follow_the_latest_match_of_the_longest_tail() {
    // ... 7 8 9 1 2 ... 5 8 9 | 8 9 → after "8 9" came "1 2" last.
    let seq = [7, 8, 9, 3, 4, 5, 8, 9, 1, 2, 6, 8, 9];
    assert_eq!(draft(&seq, 2), [1, 2]);
    assert_eq!(draft(&seq, 10), [1, 2, 6, 8, 9], "no further than the text goes");
    // A three-token tail beats a later two-token match.
    let seq = [1, 2, 3, 4, 9, 2, 3, 5, 1, 2, 3];
    assert_eq!(draft(&seq, 1), [4]);
    // No earlier occurrence of the last two, or no room: no draft.
    assert_eq!(draft(&[1, 2, 3, 4], 3), Vec::<u32>::new());
    assert_eq!(draft(&seq, 0), Vec::<u32>::new());
}

#[test]
fn chatml_template_renders_system_user_and_generation_prompt() {
    let tpl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    let out = render_template(tpl, &turns(&["Be brief.", "Hi?"]), "", "").unwrap();
    assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n");
    let chat = render_template(tpl, &turns(&["S", "Q1", "A1", "Q2"]), "", "").unwrap();
    assert_eq!(
        chat,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn templates_may_use_python_string_methods_and_raise() {
    let tpl = "{{ bos_token }}{% for m in messages %}{{ m['content'].strip() }}|{% endfor %}";
    assert_eq!(render_template(tpl, &turns(&[" a ", "b "]), "<s>", "").unwrap(), "<s>a|b|");
    let raising = "{{ raise_exception('no system role') }}";
    assert!(render_template(raising, &turns(&["", ""]), "", "").unwrap_err().to_string().contains("no system role"));
}

/// A system message, then user and assistant by turns.
fn turns<'a>(texts: &[&'a str]) -> Vec<Turn<'a>> {
    let role = |i: usize| if i == 0 { "system" } else if i % 2 == 1 { "user" } else { "assistant" };
    texts.iter().enumerate().map(|(i, t)| Turn { role: role(i), content: t }).collect()
}

/// A toy SentencePiece vocabulary in GGUF metadata: whole words win
/// over pieces, unknown characters fall back to bytes, control tokens
/// are matched whole, and decoding gives the text back.
#[test]
fn sentencepiece_vocabularies_from_gguf_metadata() {
    use candle_core::quantized::gguf_file::{Content, Value};
    let mut tokens: Vec<String> = ["<unk>", "<s>", "<end_of_turn>", "▁", "▁he", "llo", "▁hello", "▁world", "h", "e", "l", "o", "w", "r", "d"]
        .map(String::from)
        .to_vec();
    let mut types = vec![2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    let mut scores = vec![0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -1.0, -1.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("tokenizer.ggml.model".to_owned(), Value::String("llama".into()));
    metadata.insert("tokenizer.ggml.tokens".to_owned(), Value::Array(tokens.iter().cloned().map(Value::String).collect()));
    metadata.insert("tokenizer.ggml.scores".to_owned(), Value::Array(scores.into_iter().map(Value::F32).collect()));
    metadata.insert("tokenizer.ggml.token_type".to_owned(), Value::Array(types.into_iter().map(Value::I32).collect()));
    let ct = Content { magic: candle_core::quantized::gguf_file::VersionedMagic::GgufV3, metadata, tensor_infos: Default::default(), tensor_data_offset: 0 };
    let tok = sentencepiece_from_gguf(&ct).unwrap();
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap() as u32;
    let enc = tok.encode("hello world<end_of_turn>é", false).unwrap();
    // "é" is U+00E9, UTF-8 C3 A9, and has no piece of its own.
    let want = vec![id("▁hello"), id("▁world"), id("<end_of_turn>"), id("▁"), id("<0xC3>"), id("<0xA9>")];
    assert_eq!(enc.get_ids(), want.as_slice());
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), "hello world<end_of_turn> é");
}

#[test]
fn a_truncated_file_is_an_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("ask-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.gguf");
    std::fs::write(&path, b"GGUF\x03\0\0\0").unwrap();
    let err = Generator::load(&path).err().unwrap().to_string();
    assert!(err.contains("broken.gguf"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

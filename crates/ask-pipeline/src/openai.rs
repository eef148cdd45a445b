//! The OpenAI API's shapes, as `ask serve` reads and writes them: chat
//! completions (whole and streamed), embeddings, the model list and the
//! error body. Requests are checked here, with the bounds a local server
//! keeps; nothing here does I/O.

use ask_engine::{SamplingParams, Stop, Timings, Turn};

use crate::conversation::Exchange;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest answer a request may ask for: half of ask's context window,
/// as [`crate::prompt::fit`] leaves at most half for the answer.
pub const MAX_TOKENS: u64 = (ask_engine::generate::MAX_CONTEXT / 2) as u64;
/// The answer's length when a request names none (`ask query`'s default).
pub const DEFAULT_TOKENS: u64 = crate::answer::ANSWER_TOKENS as u64;
/// Most passages a request may ask to be answered from.
pub const MAX_K: u64 = 50;
/// Most texts one embeddings request may hold.
pub const MAX_INPUTS: usize = 256;

/// An error as the OpenAI API reports it, with its HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// `invalid_request_error`, `not_found_error` or `server_error`.
    pub kind: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<&'static str>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request is wrong.
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError { status: 400, kind: "invalid_request_error", message: message.into(), param, code: None }
    }

    /// 404 for a model no one serves.
    pub fn no_model(name: &str, served: &[String]) -> Self {
        ApiError {
            status: 404,
            kind: "not_found_error",
            message: format!("the model '{name}' is not served here; GET /v1/models lists those that are ({})", served.join(", ")),
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    /// 500: ask failed.
    pub fn server(message: impl Into<String>) -> Self {
        ApiError { status: 500, kind: "server_error", message: message.into(), param: None, code: None }
    }

    /// With another status (404 for an unknown path, 405, 413).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The JSON body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// One message of a chat request.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// A string, or a list of parts of which the `text` ones are read.
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts: `{"type": "text", "text": …}` and others, which are refused.
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Debug, Deserialize)]
pub struct Part {
    /// `text`, `image_url`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// `stream_options` of a streamed request.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: bool,
}

/// The body of `POST /v1/chat/completions`, as sent.
#[derive(Debug, Deserialize)]
struct RawChat {
    model: Option<String>,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    n: Option<u64>,
    /// ask's own: passages to answer from.
    k: Option<u64>,
}

/// A checked chat request.
#[derive(Debug)]
pub struct ChatRequest {
    /// The model asked for ("ask" when none was named).
    pub model: String,
    /// The conversation: role and text of each message.
    pub turns: Vec<(String, String)>,
    /// Stream the answer as server-sent events.
    pub stream: bool,
    /// Send token counts in a last streamed chunk.
    pub include_usage: bool,
    /// Passages to answer from (RAG models only).
    pub k: usize,
    /// How to sample.
    pub params: SamplingParams,
}

impl ChatRequest {
    /// Reads and checks a request body.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let raw: RawChat = serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}"), None))?;
        if raw.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only one choice (n = 1) is generated", Some("n")));
        }
        let max_tokens = raw.max_completion_tokens.or(raw.max_tokens).unwrap_or(DEFAULT_TOKENS);
        if !(1..=MAX_TOKENS).contains(&max_tokens) {
            return Err(ApiError::invalid(format!("max_tokens must be from 1 to {MAX_TOKENS}"), Some("max_tokens")));
        }
        let k = raw.k.unwrap_or(5);
        if !(1..=MAX_K).contains(&k) {
            return Err(ApiError::invalid(format!("k must be from 1 to {MAX_K}"), Some("k")));
        }
        let temperature = raw.temperature.unwrap_or(0.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid("temperature must be from 0 to 2", Some("temperature")));
        }
        if raw.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return Err(ApiError::invalid("top_p must be above 0 and at most 1", Some("top_p")));
        }
        if raw.messages.is_empty() {
            return Err(ApiError::invalid("messages is empty", Some("messages")));
        }
        let mut turns = Vec::with_capacity(raw.messages.len());
        for m in raw.messages {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" | "assistant" => m.role.as_str(),
                other => return Err(ApiError::invalid(format!("messages of role '{other}' are not supported"), Some("messages"))),
            }
            .to_owned();
            let text = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => return Err(ApiError::invalid(format!("content parts of type '{kind}' are not supported; send text"), Some("messages"))),
                        }
                    }
                    text
                }
            };
            turns.push((role, text));
        }
        let sampled = temperature > 0.0;
        let params = SamplingParams {
            temperature,
            top_p: raw.top_p.filter(|_| sampled),
            seed: raw.seed.unwrap_or(SamplingParams::default().seed),
            max_tokens: max_tokens as usize,
            // As `ask query` does (prompt lookup drafts for greedy decoding only).
            lookup: if sampled { ask_engine::generate::Lookup::Tokens(0) } else { ask_engine::generate::Lookup::Auto },
            ..SamplingParams::default()
        };
        Ok(ChatRequest {
            model: raw.model.filter(|m| !m.is_empty()).unwrap_or_else(|| "ask".into()),
            turns,
            stream: raw.stream,
            include_usage: raw.stream_options.unwrap_or_default().include_usage,
            k: k as usize,
            params,
        })
    }

    /// The question of a request answered from an index: its last
    /// message, which must be the user's.
    pub fn question(&self) -> Result<&str, ApiError> {
        match self.turns.last() {
            Some((role, text)) if role == "user" && !text.trim().is_empty() => Ok(text.trim()),
            _ => Err(ApiError::invalid("the last message must be the user's question", Some("messages"))),
        }
    }

    /// The turns before the question of a request answered from an index:
    /// each user message with the assistant's reply that follows it (system
    /// messages left out: ask's own instructions hold).
    pub fn history(&self) -> Vec<Exchange> {
        let before = &self.turns[..self.turns.len().saturating_sub(1)];
        let mut out = Vec::new();
        let mut asked: Option<&str> = None;
        for (role, text) in before {
            match (role.as_str(), asked) {
                ("user", _) => asked = Some(text.trim()),
                ("assistant", Some(q)) if !q.is_empty() => {
                    out.push(Exchange { question: q.to_owned(), answer: text.trim().to_owned() });
                    asked = None;
                }
                _ => {}
            }
        }
        out
    }

    /// The conversation as the chat template reads it.
    pub fn conversation(&self) -> Vec<Turn<'_>> {
        self.turns.iter().map(|(role, content)| Turn { role, content }).collect()
    }
}

/// What an index-backed model name asks for: `ask` (the configured index)
/// or `ask/<index>`; None for any other name.
pub fn rag_index(model: &str) -> Option<Option<&str>> {
    match model {
        "ask" => Some(None),
        m => m.strip_prefix("ask/").map(Some),
    }
}

/// OpenAI's `finish_reason` for why a generation ended.
pub fn finish_reason(stop: Stop) -> &'static str {
    match stop {
        Stop::Limit => "length",
        Stop::End | Stop::Repetition | Stop::Interrupted => "stop",
    }
}

/// Token counts.
pub fn usage(t: &Timings) -> Value {
    json!({
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.generated_tokens,
        "total_tokens": t.prompt_tokens + t.generated_tokens,
        // As OpenAI reports them: the prompt's tokens whose keys and values
        // were already computed (the opening, and what a follow-up shares
        // with the turn before it).
        "prompt_tokens_details": {"cached_tokens": t.cached_tokens},
    })
}

/// The reply to a whole (not streamed) chat request. `sources` (ask's
/// own field) lists what an index-backed answer was written from.
pub fn completion(id: &str, created: u64, model: &str, text: &str, timings: &Timings, sources: Option<Value>) -> Value {
    let mut v = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason(timings.stop)}],
        "usage": usage(timings),
    });
    if let Some(s) = sources {
        v["sources"] = s;
    }
    v
}

/// One chunk of a streamed reply: `delta` is `{"role": …}`, `{"content": …}`
/// or `{}` (the last, with `finish`).
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// A server-sent event carrying `data`.
pub fn event(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// The texts of an embeddings request (`input`: a string or a list of
/// strings), checked, and whether the vectors go back as base64.
pub fn embedding_inputs(body: &Value) -> Result<(Vec<String>, bool), ApiError> {
    let texts = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::invalid("input must be a string or a list of strings (token arrays are not supported)", Some("input")))?,
        _ => return Err(ApiError::invalid("input must be a string or a non-empty list of strings", Some("input"))),
    };
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(format!("at most {MAX_INPUTS} inputs per request"), Some("input")));
    }
    let base64 = match body["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(ApiError::invalid(format!("encoding_format '{other}': use float or base64"), Some("encoding_format"))),
    };
    Ok((texts, base64))
}

/// The reply to an embeddings request: each vector as a list of floats,
/// or with `base64` as the base64 of its little-endian f32 bytes.
pub fn embeddings(vectors: &[Vec<f32>], base64: bool, model: &str, tokens: usize) -> Value {
    use base64::Engine;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

/// A `GET /v1/models` entry.
pub fn model_entry(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "ask"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(body.as_bytes())
    }

    #[test]
    fn a_minimal_request_gets_ask_query_defaults() {
        let r = parse(r#"{"messages":[{"role":"user","content":"Why?"}]}"#).unwrap();
        assert_eq!(r.model, "ask");
        assert_eq!((r.stream, r.k, r.params.max_tokens), (false, 5, 384));
        assert_eq!(r.params.temperature, 0.0);
        assert_eq!(r.question().unwrap(), "Why?");
    }

    #[test]
    fn parts_system_roles_and_sampling_are_read() {
        let body = r#"{"model":"smollm2","stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"top_p":0.9,"max_completion_tokens":20,"max_tokens":99,
            "messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}]}"#;
        let r = parse(body).unwrap();
        assert_eq!(r.turns, [("system".to_owned(), "Be brief.".to_owned()), ("user".to_owned(), "Hi there".to_owned())]);
        assert!(r.stream && r.include_usage);
        assert_eq!(r.params.max_tokens, 20, "max_completion_tokens wins over the older max_tokens");
        assert_eq!((r.params.top_p, r.params.lookup), (Some(0.9), ask_engine::generate::Lookup::Tokens(0)));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let field = |body: &str| parse(body).unwrap_err().param;
        assert_eq!(parse("{").unwrap_err().status, 400);
        assert_eq!(field(r#"{"messages":[]}"#), Some("messages"));
        assert_eq!(field(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":100000}"#), Some("max_tokens"));
        assert_eq!(field(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#), Some("max_tokens"));
        assert_eq!(field(r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#), Some("n"));
        assert_eq!(field(r#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#), Some("temperature"));
        assert_eq!(field(r#"{"messages":[{"role":"tool","content":"x"}]}"#), Some("messages"));
        assert_eq!(field(r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#), Some("messages"));
        let last_is_assistant = parse(r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}"#).unwrap();
        assert_eq!(last_is_assistant.question().unwrap_err().param, Some("messages"));
    }

    #[test]
    fn errors_have_openais_body() {
        let e = ApiError::no_model("gpt-4o", &["ask".into(), "smollm2".into()]);
        let b = e.body();
        assert_eq!(e.status, 404);
        assert_eq!(b["error"]["code"], "model_not_found");
        assert_eq!(b["error"]["type"], "not_found_error");
        assert!(b["error"]["message"].as_str().unwrap().contains("gpt-4o"));
    }

    #[test]
    fn earlier_messages_become_the_history_of_a_question() {
        let r = parse(r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Who wrote Otter?"},
            {"role":"assistant","content":"Sam Lee [1]."},{"role":"user","content":"Which port?"},{"role":"user","content":"Which port does it use?"}]}"#)
        .unwrap();
        assert_eq!(r.question().unwrap(), "Which port does it use?");
        assert_eq!(r.history(), [Exchange { question: "Who wrote Otter?".into(), answer: "Sam Lee [1].".into() }]);
        assert!(parse(r#"{"messages":[{"role":"user","content":"Why?"}]}"#).unwrap().history().is_empty());
    }

    #[test]
    fn rag_models_are_ask_and_ask_slash_index() {
        assert_eq!(rag_index("ask"), Some(None));
        assert_eq!(rag_index("ask/mail"), Some(Some("mail")));
        assert_eq!(rag_index("smollm2"), None);
        assert_eq!(rag_index("asking"), None);
    }

    #[test]
    fn embedding_inputs_are_strings() {
        assert_eq!(embedding_inputs(&json!({"input": "a"})).unwrap(), (vec!["a".to_owned()], false));
        assert_eq!(embedding_inputs(&json!({"input": ["a", "b"], "encoding_format": "base64"})).unwrap().1, true);
        assert!(embedding_inputs(&json!({"input": [[1, 2]]})).is_err());
        assert!(embedding_inputs(&json!({"input": []})).is_err());
        assert!(embedding_inputs(&json!({"input": "a", "encoding_format": "int8"})).is_err());
    }

    #[test]
    fn base64_embeddings_are_little_endian_floats() {
        let v = embeddings(&[vec![1.0, -2.0]], true, "ask", 3);
        // 1.0f32 = 00 00 80 3f, -2.0f32 = 00 00 00 c0 (little-endian).
        assert_eq!(v["data"][0]["embedding"], "AACAPwAAAMA=");
        let f = embeddings(&[vec![0.5]], false, "ask", 1);
        assert_eq!(f["data"][0]["embedding"], json!([0.5]));
        assert_eq!(f["usage"]["total_tokens"], 1);
    }

    #[test]
    fn chunks_and_events_are_what_clients_parse() {
        let c = chunk("chatcmpl-1", 7, "ask", json!({"content": "Hi"}), None);
        assert_eq!(c["choices"][0]["delta"]["content"], "Hi");
        assert!(c["choices"][0]["finish_reason"].is_null());
        assert_eq!(event(&json!({"a": 1})), "data: {\"a\":1}\n\n");
        let t = Timings { prompt_tokens: 10, generated_tokens: 3, cached_tokens: 4, stop: Stop::Limit, ..Default::default() };
        let whole = completion("x", 7, "ask", "Hi", &t, Some(json!([])));
        assert_eq!(whole["choices"][0]["finish_reason"], "length");
        assert_eq!(whole["usage"]["total_tokens"], 13);
        assert_eq!(whole["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert!(whole["sources"].is_array());
    }
}

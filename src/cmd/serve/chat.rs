//! `ask serve`'s chat completions: an answer from an index (models `ask`,
//! `ask/INDEX`) or plain chat with an answer model, whole or streamed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use ask_engine::{Generator, ModelError};
use ask_pipeline::answer::{self, Answering, Grounds, StreamError};
use ask_pipeline::conversation::Exchange;
use ask_pipeline::json::Source;
use ask_pipeline::openai::{self as api, ApiError, ChatRequest};
use serde_json::json;
use tiny_http::Request;

use super::http::{respond, Reply};
use super::{lock, now, server_error, Server};

/// What a chat request is answered from.
enum Prompt {
    /// An index-backed answer: the conversation before the question, the
    /// passages found (or none).
    Rag { question: String, history: Vec<Exchange>, answering: Answering, grounds: Grounds },
    /// Plain chat: the conversation through the model's template.
    Chat,
}

impl Server<'_> {
    /// The answer model a chat request names, and what it answers from.
    fn prepare(&self, chat: &ChatRequest) -> Result<(PathBuf, Prompt), ApiError> {
        if let Some(index) = api::rag_index(&chat.model) {
            let question = chat.question()?.to_owned();
            let history = chat.history();
            let index = self.config(index)?;
            let answering = Answering { k: chat.k, ..Default::default() };
            let grounds = self.grounds(&index, &answering, &history, &question)?;
            return Ok((self.answer()?, Prompt::Rag { question, history, answering, grounds }));
        }
        match self.answer_model_named(&chat.model) {
            Some(path) => Ok((path, Prompt::Chat)),
            None => Err(ApiError::no_model(&chat.model, &self.model_ids())),
        }
    }

    /// Answers a chat request; returns the status and what the log says of it.
    pub(super) fn chat(&self, chat: &ChatRequest, req: Request) -> (u16, String) {
        let (path, prompt) = match self.prepare(chat) {
            Ok(p) => p,
            Err(e) => return (respond(req, e.status, &e.body()), format!(": {}", e.message)),
        };
        let id = format!("chatcmpl-{}-{}", self.started, self.requests.fetch_add(1, Ordering::Relaxed));
        let mut out = Reply::new(req, chat, id, now());
        let (mut rag, history) = match prompt {
            Prompt::Rag { grounds, .. } if grounds.hits.is_empty() => return out.finish(answer::NOTHING, "", &Default::default(), Some(json!([]))),
            Prompt::Rag { question, history, answering, grounds } => (Some((question, answering, grounds)), history),
            Prompt::Chat => (None, Vec::new()),
        };
        let mut kept = lock(&self.generator);
        let model = match kept.get(&path, Generator::load) {
            Ok(m) => m,
            Err(e) => return out.fail(server_error(e)),
        };
        let stop = AtomicBool::new(false);
        let result = match rag.as_mut() {
            Some((q, answering, grounds)) => answering
                .answer(model, grounds, &history, q, &chat.params, &stop, &mut |piece| out.piece(piece))
                .map(|a| (a.cited(), a.attributed.map(|n| format!(" [{n}]")).unwrap_or_default(), a.timings)),
            None => model
                .conversation_prompt(&chat.conversation())
                .map_err(StreamError::from)
                .and_then(|p| answer::stream(model, &p, &chat.params, &stop, &mut |piece| out.piece(piece)))
                .map(|(text, t)| (text.trim().to_owned(), String::new(), t)),
        };
        drop(kept);
        let sources = rag.map(|(_, _, g)| json!(Source::all(&g.hits)));
        match result {
            Ok((whole, tail, timings)) => out.finish(&whole, &tail, &timings, sources),
            Err(StreamError::Write(_)) => out.gone(),
            Err(StreamError::Model(ModelError::PromptTooLong { tokens, context })) => out.fail(ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(format!("the messages come to {tokens} tokens; the model reads at most {context}"), Some("messages"))
            }),
            Err(StreamError::Model(e)) => out.fail(server_error(e)),
        }
    }
}

//! `ask serve`'s HTTP: request bodies, JSON replies, and a chat reply on
//! its way out (one JSON body at the end, or server-sent events in chunked
//! transfer encoding from the first piece of text on; the connection then
//! closes, so no later request waits behind it).

use std::io::{Read, Write};

use ask_pipeline::openai::{self as api, ApiError, ChatRequest};
use serde_json::{json, Value};
use tiny_http::{Header, Request, Response};

/// Largest request body.
const MAX_BODY: usize = 1 << 20;

/// A JSON reply; returns its status.
pub(super) fn respond(req: Request, status: u16, body: &Value) -> u16 {
    let header = Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    let _ = req.respond(Response::from_string(body.to_string()).with_status_code(status).with_header(header));
    status
}

/// The request's body, at most [`MAX_BODY`] bytes.
pub(super) fn body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let too_big = || ApiError::invalid(format!("request body over {MAX_BODY} bytes"), None).with_status(413);
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    req.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut buf).map_err(|e| ApiError::invalid(format!("cannot read the body: {e}"), None))?;
    if buf.len() > MAX_BODY {
        return Err(too_big());
    }
    Ok(buf)
}

pub(super) fn json_body(req: &mut Request) -> Result<Value, ApiError> {
    serde_json::from_slice(&body(req)?).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}"), None))
}

/// A chat reply on its way: whole JSON at the end, or server-sent events
/// from the first piece of text on.
pub(super) struct Reply {
    req: Option<Request>,
    sse: Option<Box<dyn Write + Send>>,
    stream: bool,
    id: String,
    created: u64,
    model: String,
    usage: bool,
    /// Pieces of text streamed so far.
    pieces: usize,
}

impl Reply {
    pub(super) fn new(req: Request, chat: &ChatRequest, id: String, created: u64) -> Reply {
        Reply { req: Some(req), sse: None, stream: chat.stream, id, created, model: chat.model.clone(), usage: chat.include_usage, pieces: 0 }
    }

    /// Writes `text` as one chunk of the chunked body; "" ends the body.
    fn raw(&mut self, text: &str) -> std::io::Result<()> {
        let w = self.sse.as_mut().expect("the stream has begun");
        write!(w, "{:x}\r\n{text}\r\n", text.len())?;
        w.flush()
    }

    /// Writes one event.
    fn event(&mut self, data: &Value) -> std::io::Result<()> {
        self.raw(&api::event(data))
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        api::chunk(&self.id, self.created, &self.model, delta, finish)
    }

    /// Begins the event stream: the head, and the assistant's role.
    fn begin(&mut self) -> std::io::Result<()> {
        if self.sse.is_some() {
            return Ok(());
        }
        let mut w = self.req.take().expect("not yet answered").into_writer();
        write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
        self.sse = Some(w);
        self.event(&self.chunk(json!({"role": "assistant", "content": ""}), None))
    }

    /// A piece of the answer as it is decoded.
    pub(super) fn piece(&mut self, text: &str) -> std::io::Result<()> {
        if !self.stream {
            return Ok(());
        }
        self.pieces += 1;
        self.begin()?;
        self.event(&self.chunk(json!({"content": text}), None))
    }

    /// The answer is complete: `whole` is its text, `tail` the part of it
    /// the model did not write (ask's citation). A stream ends with a chunk
    /// holding the finish reason and, for an answer from an index, its
    /// `sources` (known only once the prompt has been fitted).
    pub(super) fn finish(mut self, whole: &str, tail: &str, timings: &ask_engine::Timings, sources: Option<Value>) -> (u16, String) {
        let stop = json!(timings.stop);
        let detail = format!(": model {}, {} + {} tokens, stop: {}", self.model, timings.prompt_tokens, timings.generated_tokens, stop.as_str().unwrap_or_default());
        if !self.stream {
            let body = api::completion(&self.id, self.created, &self.model, whole, timings, sources);
            return (respond(self.req.take().expect("not yet answered"), 200, &body), detail);
        }
        let rest = if self.sse.is_some() { tail } else { whole };
        let end = || -> std::io::Result<()> {
            self.begin()?;
            if !rest.is_empty() {
                self.event(&self.chunk(json!({"content": rest}), None))?;
            }
            let mut last = self.chunk(json!({}), Some(api::finish_reason(timings.stop)));
            if let Some(s) = sources {
                last["sources"] = s;
            }
            self.event(&last)?;
            if self.usage {
                let mut usage = self.chunk(json!({}), None);
                usage["choices"] = json!([]);
                usage["usage"] = api::usage(timings);
                self.event(&usage)?;
            }
            self.raw("data: [DONE]\n\n")?;
            self.raw("")
        };
        match end() {
            Ok(()) => (200, detail),
            Err(_) => self.gone(),
        }
    }

    /// The client closed the connection while the answer was streamed.
    pub(super) fn gone(self) -> (u16, String) {
        (200, format!(": model {}, the client went away after {} pieces of text; generation stopped", self.model, self.pieces))
    }

    /// The request failed: an error reply, or an error event where the
    /// stream has begun.
    pub(super) fn fail(mut self, e: ApiError) -> (u16, String) {
        let detail = format!(": {}", e.message);
        match self.req.take() {
            Some(req) => (respond(req, e.status, &e.body()), detail),
            None => {
                let _ = self.event(&e.body()).and_then(|_| self.raw(""));
                (200, detail)
            }
        }
    }
}

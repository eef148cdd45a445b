//! `ask mcp`: the Model Context Protocol over stdio, for agents and editors.
//!
//! JSON-RPC 2.0, one message per line (MCP's stdio transport): `initialize`,
//! `ping`, `tools/list` and `tools/call` with the tools `search` (the same
//! objects as `ask search --json`), `query` (an answer with its sources)
//! and `status`. Requests are answered one at a time, in order. The
//! encoder and the answer model are loaded on first use and kept warm.
//! A tool that fails answers with `isError` and the message, as the
//! specification asks; a malformed request gets a JSON-RPC error.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use ask_embed::Embedder;
use ask_engine::SamplingParams;
use ask_pipeline::answer::{self, Answering, Embedded, ANSWER_TOKENS};
use ask_pipeline::conversation::Exchange;
use ask_pipeline::json::{SearchHit, Source};
use ask_pipeline::warm::{check_encoder, Warm};
use ask_store::{Filter, Mode, Store};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

use super::Run;
use crate::cli::McpArgs;
use crate::config::Config;
use crate::exit::Exit;

/// The protocol revisions ask speaks, newest first.
const PROTOCOLS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];
/// Longest request line.
const MAX_REQUEST: usize = 1 << 20;
/// Most passages a tool call may ask for, and longest answer.
const MAX_K: u64 = 50;
const MAX_ANSWER_TOKENS: u64 = 1024;

/// A JSON-RPC error: code and message.
struct RpcError(i64, String);

struct Server<'a> {
    cfg: &'a Config,
    rt: &'a Runtime,
    model: Option<PathBuf>,
    warm: Warm,
    /// LanceDB's caches of the indexes' files, kept across tool calls
    /// (each call opens its index afresh, as `ask serve` does).
    caches: ask_store::Caches,
}

impl Run for McpArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let mut server = Server { cfg, rt, model: self.model.clone(), warm: Warm::default(), caches: ask_store::Caches::new() };
        let stdin = std::io::stdin().lock();
        let mut out = std::io::stdout().lock();
        for line in stdin.lines() {
            let line = line.context("cannot read a request from standard input")?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(reply) = server.reply(&line) {
                serde_json::to_writer(&mut out, &reply)?;
                writeln!(out)?;
                out.flush()?;
            }
        }
        Ok(Exit::Success)
    }
}

impl Server<'_> {
    /// The reply to one line, or none for a notification.
    fn reply(&mut self, line: &str) -> Option<Value> {
        let error = |id: Value, RpcError(code, message)| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
        if line.len() > MAX_REQUEST {
            return Some(error(Value::Null, RpcError(-32600, format!("request of {} bytes; at most {MAX_REQUEST}", line.len()))));
        }
        let msg: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Some(error(Value::Null, RpcError(-32700, format!("parse error: {e}")))),
        };
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            // A response from the client, or not a request at all.
            return msg.get("id").filter(|_| msg.get("result").is_none() && msg.get("error").is_none()).map(|id| error(id.clone(), RpcError(-32600, "not a request: no method".into())));
        };
        let id = msg.get("id").cloned()?; // no id: a notification, never answered
        let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
        Some(match self.handle(method, &params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => error(id, e),
        })
    }

    fn handle(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => {
                let asked = params["protocolVersion"].as_str().unwrap_or_default();
                let version = PROTOCOLS.iter().find(|v| **v == asked).unwrap_or(&PROTOCOLS[0]);
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "ask", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Search and answer questions from the user's own indexed files (notes, documents, mail), fully offline."
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools()})),
            "tools/call" => {
                let name = params["name"].as_str().ok_or_else(|| RpcError(-32602, "tools/call needs a tool name".into()))?;
                let args = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
                let outcome = match name {
                    "search" => self.search(&args),
                    "query" => self.query(&args),
                    "status" => self.status(&args),
                    _ => return Err(RpcError(-32602, format!("unknown tool '{name}'; the tools are search, query and status"))),
                };
                Ok(match outcome {
                    Ok(value) => json!({
                        "content": [{"type": "text", "text": serde_json::to_string_pretty(&value).expect("JSON serialises")}],
                        "structuredContent": value,
                        "isError": false
                    }),
                    Err(e) => json!({"content": [{"type": "text", "text": format!("{e:#}")}], "isError": true}),
                })
            }
            _ => Err(RpcError(-32601, format!("method not found: {method}"))),
        }
    }

    /// The configuration with the index a call names.
    fn config(&self, args: &Value) -> Result<Config> {
        match args.get("index").and_then(Value::as_str) {
            Some(name) => self.cfg.with_index(name),
            None => Ok(self.cfg.clone()),
        }
    }

    /// The encoder an index was built with, loaded once.
    fn encoder(&mut self, cfg: &Config) -> Result<&Embedder> {
        let meta = super::index_meta(cfg)?;
        let e = self.warm.encoder(&cfg.embed_model).context("cannot load the encoder")?;
        check_encoder(&meta, e.info()).with_context(|| format!("index '{}'", cfg.index_name))?;
        Ok(e)
    }

    fn search(&mut self, args: &Value) -> Result<Value> {
        let query = text(args, "query")?;
        let k = count(args, "k", 5, MAX_K)?;
        let name = args.get("mode").and_then(Value::as_str).unwrap_or(Mode::Hybrid.as_str());
        let Some(mode) = Mode::from_name(name) else {
            bail!("mode '{name}': use hybrid, dense or bm25");
        };
        let cfg = self.config(args)?;
        let (rt, filter) = (self.rt, Filter::default());
        let encoder = if mode.needs_vector() { Some(self.encoder(&cfg)?) } else { None };
        let searched = Embedded::new(encoder.as_deref(), &query)?;
        let store = rt.block_on(Store::open_shared(&cfg.index_dir, &self.caches))?;
        let query = searched.query(mode).expect("the vector was computed for this mode");
        let req = ask_store::Request { query, k, filter: &filter };
        let hits = rt.block_on(store.search(&req))?;
        Ok(json!({"results": SearchHit::all(&hits)}))
    }

    fn query(&mut self, args: &Value) -> Result<Value> {
        let question = text(args, "question")?;
        let history = earlier_turns(args)?;
        let k = count(args, "k", 5, MAX_K)?;
        let max_tokens = count(args, "max_tokens", ANSWER_TOKENS as u64, MAX_ANSWER_TOKENS)?;
        let cfg = self.config(args)?;
        let rt = self.rt;
        let filter = Filter::default();
        let answering = Answering { k, ..Default::default() };
        let store = rt.block_on(Store::open_shared(&cfg.index_dir, &self.caches))?;
        let embedder = self.encoder(&cfg)?;
        let mut grounds = rt.block_on(answering.ground(&store, embedder, &filter, &history, &question, None))?;
        if grounds.hits.is_empty() {
            return Ok(json!({"answer": null, "sources": [], "note": answer::NOTHING}));
        }
        let path = cfg.answer_model(self.model.as_deref())?;
        let model = self.warm.generator(&path).context("cannot load the answer model")?;
        let params = SamplingParams { max_tokens, ..Default::default() };
        let answer = answering.answer(model, &mut grounds, &history, &question, &params, &AtomicBool::new(false), &mut |_| Ok(()))?;
        Ok(json!({"answer": answer.cited(), "sources": Source::all(&grounds.hits), "model": model.name}))
    }

    fn status(&mut self, args: &Value) -> Result<Value> {
        let cfg = self.config(args)?;
        let meta = super::index_meta(&cfg)?;
        let store = self.rt.block_on(Store::open_shared(&cfg.index_dir, &self.caches))?;
        let counts = self.rt.block_on(store.counts())?;
        Ok(json!({
            "index": cfg.index_name,
            "files": counts.files,
            "failed": counts.failed,
            "chunks": counts.chunks,
            "encoder": meta.encoder,
            "backend": meta.backend,
            "dim": meta.dim,
            "indexed_at": meta.indexed_at_s,
        }))
    }
}

fn text(args: &Value, key: &str) -> Result<String> {
    match args.get(key).and_then(Value::as_str).map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => bail!("'{key}' must be a non-empty string"),
    }
}

/// The `history` argument: earlier questions and answers, oldest first.
fn earlier_turns(args: &Value) -> Result<Vec<Exchange>> {
    match args.get("history") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| anyhow::anyhow!("'history' must be a list of {{\"question\", \"answer\"}} objects: {e}")),
    }
}

fn count(args: &Value, key: &str, default: u64, max: u64) -> Result<usize> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default as usize),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(n as usize),
            _ => bail!("'{key}' must be a whole number from 1 to {max}"),
        },
    }
}

/// The tools, with JSON Schemas of their arguments.
fn tools() -> Value {
    let index = json!({"type": "string", "description": "Index name (default: the configured index)"});
    json!([
        {
            "name": "search",
            "title": "Search the user's files",
            "description": "Find the passages of the user's indexed files (notes, documents, mail) most relevant to a query. Returns each passage's text, file path, lines and score.",
            "inputSchema": {"type": "object", "properties": {
                "query": {"type": "string", "description": "What to look for"},
                "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "description": "Passages to return (default 5)"},
                "mode": {"type": "string", "enum": ["hybrid", "dense", "bm25"], "description": "Ranking (default hybrid)"},
                "index": index
            }, "required": ["query"]}
        },
        {
            "name": "query",
            "title": "Answer from the user's files",
            "description": "Answer a question from the user's indexed files with the local model; the answer cites its sources as [n], listed with their file and lines.",
            "inputSchema": {"type": "object", "properties": {
                "question": {"type": "string"},
                "history": {"type": "array", "description": "The conversation before this question, oldest first, when it is a follow-up",
                    "items": {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}}, "required": ["question", "answer"]}},
                "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "description": "Passages to answer from (default 5)"},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_ANSWER_TOKENS, "description": "Longest answer (default 384)"},
                "index": index
            }, "required": ["question"]}
        },
        {
            "name": "status",
            "title": "What an index holds",
            "description": "Files, chunks and encoder of an index, and when it was last updated.",
            "inputSchema": {"type": "object", "properties": {"index": index}}
        }
    ])
}

//! `ask serve`: a local HTTP server speaking the OpenAI API, for agents,
//! editors and scripts that already speak it.
//!
//! Four worker threads take requests from tiny_http's queue. The encoder
//! and the answer model are each kept loaded behind a lock: requests that
//! need the answer model are answered in turn, while searches and
//! embeddings go on beside a generation. Streamed answers are server-sent
//! events in chunked transfer encoding, written as each piece of text is
//! decoded; a write that fails (the client left) stops the generation.
//! The shapes of requests and replies are [`ask_pipeline::openai`]'s.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, bail, Result};
use ask_models::stores::{Found, Role, Stores};
use ask_embed::Embedder;
use ask_engine::Generator;
use ask_pipeline::answer::{Answering, Embedded, Grounds};
use ask_pipeline::conversation::Exchange;
use ask_pipeline::json::SearchHit;
use ask_pipeline::openai::{self as api, ApiError, ChatRequest};
use ask_pipeline::warm::{check_encoder, Kept};
use ask_store::{Filter, Hit, IndexMeta, Mode, Store};
use serde_json::{json, Value};
use tiny_http::{Method, Request};
use tokio::runtime::Runtime;

mod chat;
mod http;

use http::{body, json_body, respond};

use super::Run;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::exit::Exit;

/// Threads taking requests.
const WORKERS: usize = 4;

pub(super) struct Server<'a> {
    cfg: &'a Config,
    rt: &'a Runtime,
    /// The answer model of the models `ask` and `ask/INDEX`, resolved once
    /// at start (`--model`, ASK_MODEL, the config file or the default), or
    /// why it cannot be used.
    answer: std::result::Result<PathBuf, String>,
    /// Every answer model of every store, by name, as found at start; read
    /// again only when a request names one not among them (a model fetched
    /// since), so `/v1/models` does not read every GGUF header each time.
    answer_models: Mutex<Vec<(String, PathBuf)>>,
    /// Shared out to each request, so that none holds the lock while it
    /// embeds or searches.
    encoder: Mutex<Kept<Arc<Embedder>>>,
    generator: Mutex<Kept<Generator>>,
    /// LanceDB's caches of the indexes' files, kept across requests: each
    /// request opens its index afresh (to see what a running `ask index`
    /// commits) without reading the full-text and vector indexes again.
    caches: ask_store::Caches,
    requests: AtomicU64,
    started: u64,
}

impl Run for ServeArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let remote = !self.listen.ip().is_loopback();
        if remote && !self.allow_remote {
            bail!("{} can be reached from other machines, and whoever reaches it can read your indexed files; pass --allow-remote to listen there anyway", self.listen);
        }
        let http = tiny_http::Server::http(self.listen).map_err(|e| anyhow!("cannot listen on {}: {e}", self.listen))?;
        let addr = http.server_addr().to_ip().ok_or_else(|| anyhow!("not listening on an IP address"))?;
        if remote {
            eprintln!("ask: warning: serving your indexed files to anyone who can reach {addr}");
        }
        if !cfg.quiet {
            eprintln!("ask serve: listening on http://{addr}/v1 (model \"ask\" answers from index '{}')", cfg.index_name);
        }
        let answer = cfg.answer_model(self.model.as_deref()).map_err(|e| format!("{e:#}"));
        let server = Server {
            cfg,
            rt,
            answer_models: Mutex::new(answer_models(cfg, answer.as_ref().ok())),
            answer,
            encoder: Mutex::default(),
            generator: Mutex::default(),
            caches: ask_store::Caches::new(),
            requests: AtomicU64::new(0),
            started: now(),
        };
        std::thread::scope(|s| {
            for _ in 0..WORKERS {
                s.spawn(|| {
                    for req in http.incoming_requests() {
                        // A panic is this request's failure alone: tiny_http
                        // answers a dropped request with a 500.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.route(req)));
                    }
                });
            }
        });
        Ok(Exit::Success)
    }
}

/// Every answer model `ask models` finds, by the name `--model` takes, and
/// the configured one (`answer`) by its file name when it is elsewhere.
fn answer_models(cfg: &Config, answer: Option<&PathBuf>) -> Vec<(String, PathBuf)> {
    let scan = Stores::from_env(&cfg.models_dir).scan();
    let mut found: Vec<(String, PathBuf)> = scan.found.into_iter().filter(|f| f.role == Role::Answer).map(|f| (f.name, f.path)).collect();
    if let Some(path) = answer {
        if !found.iter().any(|(_, p)| p == path) {
            found.push((ask_models::catalog::file_name(path), path.clone()));
        }
    }
    found
}

/// A lock whose holder panicked is still usable: a model's state is set
/// afresh by every generation.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(super) fn server_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::server(format!("{e:#}"))
}

impl Server<'_> {
    fn route(&self, mut req: Request) {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.url().split('?').next().unwrap_or_default().to_owned();
        let reply = match (&method, path.as_str()) {
            (Method::Get, "/health") => Ok(json!({"status": "ok"})),
            (Method::Get, "/v1/models") => Ok(self.models()),
            (Method::Post, "/v1/embeddings") => json_body(&mut req).and_then(|b| self.embeddings(&b)),
            (Method::Post, "/v1/search") => json_body(&mut req).and_then(|b| self.search(&b)),
            (Method::Post, "/v1/chat/completions") => match body(&mut req).and_then(|b| ChatRequest::parse(&b)) {
                Ok(chat) => {
                    let (status, detail) = self.chat(&chat, req);
                    return self.log(&method, &path, status, started, &detail);
                }
                Err(e) => Err(e),
            },
            (_, "/health" | "/v1/models" | "/v1/embeddings" | "/v1/search" | "/v1/chat/completions") => {
                Err(ApiError::invalid(format!("{method} is not allowed on {path}"), None).with_status(405))
            }
            _ => Err(ApiError::invalid(format!("no endpoint {path}; see `ask serve --help`"), None).with_status(404)),
        };
        let (status, detail) = match reply {
            Ok(v) => (respond(req, 200, &v), String::new()),
            Err(e) => (respond(req, e.status, &e.body()), format!(": {}", e.message)),
        };
        self.log(&method, &path, status, started, &detail);
    }

    /// One line per request on standard error (none with --quiet).
    fn log(&self, method: &Method, path: &str, status: u16, started: std::time::Instant, detail: &str) {
        if !self.cfg.quiet {
            eprintln!("ask serve: {method} {path} {status} in {:.2} s{detail}", started.elapsed().as_secs_f64());
        }
    }

    /// The models of one role that `ask models` lists, looked for now.
    fn found(&self, role: Role) -> Vec<Found> {
        Stores::from_env(&self.cfg.models_dir).scan().found.into_iter().filter(|f| f.role == role).collect()
    }

    /// The answer models found at start ([`answer_models`]).
    pub(super) fn answer_models(&self) -> Vec<(String, PathBuf)> {
        lock(&self.answer_models).clone()
    }

    /// The answer model named `name`, looking in the stores again when it
    /// was not there at start.
    pub(super) fn answer_model_named(&self, name: &str) -> Option<PathBuf> {
        let find = |models: &[(String, PathBuf)]| models.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone());
        if let Some(path) = find(&lock(&self.answer_models)) {
            return Some(path);
        }
        let fresh = answer_models(self.cfg, self.answer.as_ref().ok());
        let path = find(&fresh);
        *lock(&self.answer_models) = fresh;
        path
    }

    /// The configured answer model, or the error that says why not.
    pub(super) fn answer(&self) -> Result<PathBuf, ApiError> {
        self.answer.clone().map_err(ApiError::server)
    }

    pub(super) fn model_ids(&self) -> Vec<String> {
        let mut ids = vec!["ask".to_owned()];
        ids.extend(super::index_names(self.cfg).unwrap_or_default().into_iter().map(|n| format!("ask/{n}")));
        ids.extend(self.answer_models().into_iter().map(|(n, _)| n));
        ids
    }

    fn models(&self) -> Value {
        let data: Vec<Value> = self.model_ids().iter().map(|id| api::model_entry(id, self.started)).collect();
        json!({"object": "list", "data": data})
    }

    /// The configuration for an index name (None: the configured index),
    /// with the index's metadata: 404 when there is no such index.
    pub(super) fn config(&self, index: Option<&str>) -> Result<(Config, IndexMeta), ApiError> {
        let cfg = match index {
            Some(name) => self.cfg.with_index(name).map_err(|e| ApiError::invalid(format!("{e:#}"), Some("model")))?,
            None => self.cfg.clone(),
        };
        let meta = super::index_meta(&cfg).map_err(|e| ApiError::invalid(format!("{e:#}"), None).with_status(404))?;
        Ok((cfg, meta))
    }

    /// The ranking `ask search` prints for `query` in the index of `cfg`
    /// (built as `meta` says).
    fn hits(&self, (cfg, meta): &(Config, IndexMeta), query: &str, k: usize, mode: Mode) -> Result<Vec<Hit>, ApiError> {
        let encoder = if mode.needs_vector() { Some(self.encoder(&cfg.embed_model)?) } else { None };
        if let Some(encoder) = &encoder {
            check_encoder(meta, encoder.info()).map_err(server_error)?;
        }
        let searched = Embedded::new(encoder.as_deref(), query).map_err(server_error)?;
        let store = self.rt.block_on(Store::open_shared(&cfg.index_dir, &self.caches)).map_err(server_error)?;
        let query = searched.query(mode).expect("the vector was computed for this mode");
        self.rt.block_on(store.search(&ask_store::Request { query, k, filter: &Filter::default() })).map_err(server_error)
    }

    /// The passages `question` (after the turns of `history`) is answered
    /// from in the index of `cfg` (built as `meta` says).
    pub(super) fn grounds(&self, (cfg, meta): &(Config, IndexMeta), answering: &Answering, history: &[Exchange], question: &str) -> Result<Grounds, ApiError> {
        let store = self.rt.block_on(Store::open_shared(&cfg.index_dir, &self.caches)).map_err(server_error)?;
        let encoder = self.encoder(&cfg.embed_model)?;
        check_encoder(meta, encoder.info()).map_err(server_error)?;
        self.rt.block_on(answering.ground(&store, &encoder, &Filter::default(), history, question, None)).map_err(server_error)
    }

    /// The encoder in `dir`, loaded on first use and kept (another
    /// directory's replaces it; a request still using the one before keeps
    /// it until it ends).
    fn encoder(&self, dir: &Path) -> Result<Arc<Embedder>, ApiError> {
        let mut kept = lock(&self.encoder);
        kept.get(dir, |dir| Embedder::load(dir).map(Arc::new)).cloned().map_err(server_error)
    }

    fn search(&self, body: &Value) -> Result<Value, ApiError> {
        let query = body["query"].as_str().map(str::trim).filter(|q| !q.is_empty());
        let query = query.ok_or_else(|| ApiError::invalid("query must be a non-empty string", Some("query")))?;
        let k = match &body["k"] {
            Value::Null => 10,
            v => v.as_u64().filter(|k| (1..=api::MAX_K).contains(k)).ok_or_else(|| ApiError::invalid(format!("k must be from 1 to {}", api::MAX_K), Some("k")))? as usize,
        };
        let name = body["mode"].as_str().unwrap_or(Mode::Hybrid.as_str());
        let mode = Mode::from_name(name).ok_or_else(|| ApiError::invalid(format!("mode '{name}': use hybrid, dense or bm25"), Some("mode")))?;
        let index = self.config(body["index"].as_str())?;
        let hits = self.hits(&index, query, k, mode)?;
        Ok(json!({"results": SearchHit::all(&hits)}))
    }

    fn embeddings(&self, body: &Value) -> Result<Value, ApiError> {
        let (texts, base64) = api::embedding_inputs(body)?;
        let name = body["model"].as_str().unwrap_or("ask");
        let dir = if name == "ask" {
            self.cfg.embed_model.clone()
        } else {
            let encoders = self.found(Role::Encoder);
            match encoders.iter().find(|f| f.name == name) {
                Some(f) => f.path.clone(),
                None => return Err(ApiError::no_model(name, &encoders.iter().map(|f| f.name.clone()).chain(["ask".into()]).collect::<Vec<_>>())),
            }
        };
        let encoder = self.encoder(&dir)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (vectors, _) = encoder.embed_passages(&refs).map_err(server_error)?;
        let tokens: usize = refs.iter().map(|t| encoder.tokenizer().encode(*t, true).map_or(0, |e| e.len())).sum();
        Ok(api::embeddings(&vectors, base64, name, tokens))
    }


}

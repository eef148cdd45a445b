//! `ask serve`: the real server on a free loopback port, driven with curl,
//! a raw socket and the official `openai` Python package.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

/// How long a test waits for the server to say something before failing.
const PATIENCE: Duration = Duration::from_secs(120);

/// A running `ask serve`, killed when dropped; its log lines, as they come.
struct Serve {
    child: Child,
    addr: String,
    log: std::sync::Mutex<Receiver<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Under strace the server is strace's child, which a killed strace
        // would leave running: it goes first.
        let children = format!("/proc/{0}/task/{0}/children", self.child.id());
        for pid in std::fs::read_to_string(children).unwrap_or_default().split_whitespace() {
            let _ = Command::new("kill").arg(pid).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(mut cmd: Command) -> Serve {
        let mut child = cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, log) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Built first, so that a failure below still stops the server.
        let mut serve = Serve { child, addr: String::new(), log: log.into() };
        let first = serve.logged("listening on");
        serve.addr = first.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("{first}")).to_owned();
        serve
    }

    /// `curl -X METHOD` with `body` on its standard input: the status and
    /// the reply's text.
    fn curl(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "-X", method, "-H", "Content-Type: application/json", "--data-binary", "@-", "-w", "\n%{http_code}"])
            .arg(format!("http://{}{path}", self.addr))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl is installed");
        child.stdin.take().unwrap().write_all(body).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "curl {method} {path} failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let (reply, status) = text.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), reply.to_owned())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.curl("POST", path, body.to_string().as_bytes());
        (status, json(text.as_bytes()))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.curl("GET", path, b"");
        (status, json(text.as_bytes()))
    }

    /// Waits for a log line holding `needle`.
    fn logged(&self, needle: &str) -> String {
        loop {
            let line = self.log.lock().unwrap().recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("no log line with '{needle}'"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// The `data:` payloads of a server-sent event stream.
fn events(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_owned).collect()
}

fn question(stream: bool) -> Value {
    json!({"model": "ask", "stream": stream, "max_tokens": 24, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "When is the security deposit returned?"}]})
}

#[test]
fn answers_stream_and_whole_alike_with_their_sources_and_search_matches_the_cli() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let serve = Serve::start(env.cmd());

    let (status, models) = serve.get("/v1/models");
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"ask") && ids.contains(&"ask/default"), "{ids:?}");
    assert!(ids.contains(&"SmolLM2-135M-Instruct.Q4_1.gguf"), "the configured answer model is served for plain chat: {ids:?}");

    let (status, whole) = serve.post("/v1/chat/completions", &question(false));
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.is_empty());
    assert_eq!(file_name(&whole["sources"][0]), "tenancy-notes.md", "{whole}");
    assert!(whole["usage"]["completion_tokens"].as_u64().unwrap() <= 24);

    // The same question streamed: the same greedy text, piece by piece.
    let (status, text) = serve.curl("POST", "/v1/chat/completions", question(true).to_string().as_bytes());
    assert_eq!(status, 200);
    let data = events(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| json(d.as_bytes())).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed.trim(), content);
    assert!(chunks.len() > 4, "the answer came in pieces: {text}");
    let finish = chunks.iter().find(|c| c["choices"][0]["finish_reason"].is_string()).expect("a finish chunk");
    assert_eq!(file_name(&finish["sources"][0]), "tenancy-notes.md");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    for count in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][count], whole["usage"][count], "{count}");
    }
    // The same prompt again: the loaded model held all of it but the last
    // token, whose logits come next.
    let prompt = whole["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], prompt - 1, "{usage}");

    // The search endpoint gives the objects `ask search --json` prints.
    let (status, found) = serve.post("/v1/search", &json!({"query": "kiln smell upstairs", "k": 3}));
    assert_eq!(status, 200, "{found}");
    let cli = env.search("kiln smell upstairs", 3);
    let key = |h: &Value| (h["rank"].clone(), h["path"].clone(), h["chunk"].clone(), h["text"].clone());
    assert_eq!(found["results"].as_array().unwrap().iter().map(key).collect::<Vec<_>>(), cli.iter().map(key).collect::<Vec<_>>());

    // What an `ask index` commits while the server runs is what the next
    // request searches: the server keeps LanceDB's caches across requests,
    // never an old version of the index.
    env.write("docs/glacier-survey.md", "# Glacier survey\n\nThe moraine ablation stakes on the Aletsch glacier were read in August.\n");
    env.index(&["docs"]);
    for mode in ["bm25", "hybrid"] {
        let (status, found) = serve.post("/v1/search", &json!({"query": "moraine ablation stakes", "k": 3, "mode": mode}));
        assert_eq!(status, 200, "{found}");
        assert_eq!(file_name(&found["results"][0]), "glacier-survey.md", "{mode}: {found}");
        let cli = env.search("moraine ablation stakes", 3);
        assert_eq!(found["results"][0]["text"], cli[0]["text"], "{mode}");
    }

    // Plain chat with a model by name: no retrieval, no sources.
    let plain = json!({"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_tokens": 8,
                       "messages": [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "What is the capital of France?"}]});
    let (status, reply) = serve.post("/v1/chat/completions", &plain);
    assert_eq!(status, 200, "{reply}");
    assert!(reply.get("sources").is_none(), "{reply}");
    assert!(serve.logged("model SmolLM2-135M-Instruct.Q4_1.gguf,").contains(" 200 "));
}

#[test]
fn embeddings_come_as_floats_or_base64_of_the_same_vectors() {
    let env = Env::new();
    let serve = Serve::start(env.cmd());
    let (status, floats) = serve.post("/v1/embeddings", &json!({"model": "ask", "input": ["security deposit", "sourdough"]}));
    assert_eq!(status, 200, "{floats}");
    let vectors: Vec<Vec<f64>> = floats["data"].as_array().unwrap().iter().map(|d| serde_json::from_value(d["embedding"].clone()).unwrap()).collect();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].len(), 384);
    let norm: f64 = vectors[0].iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-3, "unit length: {norm}");
    let (_, b64) = serve.post("/v1/embeddings", &json!({"input": "security deposit", "encoding_format": "base64"}));
    let text = b64["data"][0]["embedding"].as_str().unwrap();
    let bytes = decode_base64(text);
    let back: Vec<f64> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect();
    assert_eq!(back.len(), 384);
    assert!(back.iter().zip(&vectors[0]).all(|(a, b)| (a - b).abs() < 1e-6));
    assert!(b64["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

/// Standard base64, as a client decodes it (written here so the test does
/// not share the server's encoder).
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".bytes().position(|x| x == c).unwrap() as u32;
    let digits: Vec<u32> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::new();
    for group in digits.chunks(4) {
        let n = group.iter().enumerate().fold(0u32, |acc, (i, d)| acc | d << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_lives_on() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let serve = Serve::start(env.cmd());
    let (status, text) = serve.curl("POST", "/v1/chat/completions", b"{not json");
    assert_eq!(status, 400);
    assert_eq!(json(text.as_bytes())["error"]["type"], "invalid_request_error");
    let (status, _) = serve.curl("POST", "/v1/chat/completions", &vec![b' '; 2 << 20]);
    assert_eq!(status, 413);
    let mut big = question(false);
    big["max_tokens"] = json!(100_000);
    let (status, e) = serve.post("/v1/chat/completions", &big);
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("max_tokens")));
    let mut unknown = question(false);
    unknown["model"] = json!("gpt-4o");
    let (status, e) = serve.post("/v1/chat/completions", &unknown);
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("model_not_found")));
    unknown["model"] = json!("ask/no-such-index");
    assert_eq!(serve.post("/v1/chat/completions", &unknown).0, 404);
    assert_eq!(serve.get("/v1/chat/completions").0, 405);
    assert_eq!(serve.get("/v1/nothing").0, 404);
    assert_eq!(serve.post("/v1/search", &json!({"query": ""})).0, 400);
    // Still serving.
    assert_eq!(serve.get("/health"), (200, json!({"status": "ok"})));
}

#[test]
fn concurrent_requests_all_get_answers_and_a_client_that_leaves_stops_its_generation() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let serve = Serve::start(env.cmd());
    let replies: Vec<(u16, Value)> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..3).map(|_| s.spawn(|| serve.post("/v1/chat/completions", &question(false)))).collect();
        let search = s.spawn(|| serve.post("/v1/search", &json!({"query": "boiler pressure"})));
        let mut all: Vec<_> = asks.into_iter().map(|h| h.join().unwrap()).collect();
        all.push(search.join().unwrap());
        all
    });
    for (status, reply) in &replies {
        assert_eq!(*status, 200, "{reply}");
    }
    let first = &replies[0].1["choices"][0]["message"]["content"];
    assert!(replies[..3].iter().all(|(_, r)| r["choices"][0]["message"]["content"] == *first), "the same greedy answer each time");

    // A client that reads the first piece of a long answer and hangs up.
    let mut long = question(true);
    long["max_tokens"] = json!(2000);
    long["messages"][0]["content"] = json!("Write a long story about the flat, the landlord, the boiler and the neighbours.");
    let body = long.to_string();
    let mut socket = TcpStream::connect(&serve.addr).unwrap();
    write!(socket, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"content\":\"") || String::from_utf8_lossy(&seen).matches("data: ").count() < 2 {
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before its first piece");
        seen.extend(&buf[..n]);
    }
    drop(socket);
    let line = serve.logged("the client went away");
    assert!(line.contains("generation stopped"), "{line}");
    // The answer model is free again for the next request.
    assert_eq!(serve.post("/v1/chat/completions", &question(false)).0, 200);
}

#[test]
fn other_machines_are_refused_unless_allowed() {
    let env = Env::new();
    let out = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--allow-remote"), "{}", stderr(&out));
}

#[test]
fn serve_opens_no_outbound_connection() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let log = env.path("strace-serve.log");
    let mut cmd = env.command("strace");
    cmd.args(["-f", "-e", "trace=socket,connect,bind,listen", "-o"]).arg(&log).arg(ASK);
    let serve = Serve::start(cmd);
    assert_eq!(serve.post("/v1/chat/completions", &question(false)).0, 200);
    assert_eq!(serve.post("/v1/search", &json!({"query": "deposit"})).0, 200);
    assert_eq!(serve.post("/v1/embeddings", &json!({"input": "deposit"})).0, 200);
    drop(serve);
    let calls = std::fs::read_to_string(&log).unwrap();
    let connects: Vec<&str> = calls.lines().filter(|l| l.contains("connect(")).collect();
    assert!(connects.is_empty(), "outbound connections:\n{}", connects.join("\n"));
    let listens: Vec<&str> = calls.lines().filter(|l| l.contains("listen(")).collect();
    assert_eq!(listens.len(), 1, "one listening socket: {calls}");
    assert!(calls.lines().any(|l| l.contains("bind(") && l.contains("127.0.0.1")), "{calls}");
}

#[test]
fn the_official_openai_client_works_against_it() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let serve = Serve::start(env.cmd());
    let script = fixtures().parent().unwrap().join("tests/clients/openai_client.py");
    let out = env
        .command(python_clients())
        .arg(script)
        .arg(format!("http://{}/v1", serve.addr))
        .arg("SmolLM2-135M-Instruct.Q4_1.gguf")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json(&out.stdout);
    assert!(got["models"].as_array().unwrap().contains(&json!("ask")), "{got}");
    for way in ["whole", "stream"] {
        assert_eq!(file_name(&got[way]["sources"][0]), "tenancy-notes.md", "{way}: {got}");
        assert!(!got[way]["content"].as_str().unwrap().is_empty());
    }
    assert_eq!(got["whole"]["content"].as_str().unwrap().trim(), got["stream"]["content"].as_str().unwrap().trim());
    assert!(got["stream"]["pieces"].as_u64().unwrap() > 1);
    assert_eq!(got["stream"]["completion_tokens"], got["whole"]["completion_tokens"]);
    assert!(got["plain"]["sources"].is_null() && !got["plain"]["content"].as_str().unwrap().is_empty());
    // The client asked for base64 and decoded it: the same vector as floats.
    let b64 = &got["embeddings"][0].as_array().unwrap();
    let float = got["embedding_float"].as_array().unwrap();
    assert_eq!(b64.len(), 384);
    assert!(b64.iter().zip(float).all(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-6));
    assert_eq!(got["errors"]["unknown_model"], json!([404, "model_not_found"]));
    assert_eq!(got["errors"]["max_tokens"], json!([400, "max_tokens"]));
}

#[test]
fn the_official_mcp_sdk_client_works_against_ask_mcp() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let script = fixtures().parent().unwrap().join("tests/clients/mcp_client.py");
    let mut cmd = env.command(python_clients());
    cmd.arg(script).arg(ASK).arg("who fires the kiln late at night");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json(&out.stdout);
    assert_eq!(got["server"], "ask");
    assert_eq!(got["tools"], json!(["search", "query", "status"]));
    assert_eq!(got["search_error"], false);
    assert_eq!(file_name(&got["results"][0]), "tenancy-notes.md", "{got}");
    assert_eq!(got["status"]["files"], 5);
    assert_eq!(got["empty_query_is_error"], true);
}

/// The answer models are found once, at start: a model placed in ask's
/// models folder while the server runs is found when a request names it
/// (the stores are read again then), and listed from then on.
#[test]
fn a_model_added_while_serving_is_found_when_named() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let serve = Serve::start(env.cmd());
    let ids = |serve: &Serve| -> Vec<String> {
        let (status, list) = serve.get("/v1/models");
        assert_eq!(status, 200);
        list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    };
    assert!(!ids(&serve).contains(&"late-model".to_owned()), "{:?}", ids(&serve));
    std::fs::create_dir_all(env.home.join("models")).unwrap();
    std::fs::copy(models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"), env.home.join("models/late-model.gguf")).unwrap();
    let chat = json!({"model": "late-model", "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi."}]});
    let (status, reply) = serve.post("/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"], "late-model", "{reply}");
    assert!(ids(&serve).contains(&"late-model".to_owned()), "{:?}", ids(&serve));
}

/// An OpenAI client sends the whole conversation: a follow-up is answered
/// from what the earlier turns were about.
#[test]
fn a_follow_up_is_answered_with_the_messages_before_it() {
    let env = two_tools();
    let serve = Serve::start(env.cmd());
    let follow_up = json!({"role": "user", "content": "Which port does it listen on by default?"});
    let alone = json!({"model": "ask", "max_tokens": 8, "k": 1, "messages": [follow_up]});
    let (status, reply) = serve.post("/v1/chat/completions", &alone);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(file_name(&reply["sources"][0]), "kestrel.md", "{reply}");
    let conversation = json!({"model": "ask", "max_tokens": 8, "k": 1, "messages": [
        {"role": "user", "content": "Who wrote the Otter backup tool?"},
        {"role": "assistant", "content": "Otter was written by Sam Lee [1]."},
        follow_up]});
    let (status, reply) = serve.post("/v1/chat/completions", &conversation);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(file_name(&reply["sources"][0]), "otter.md", "{reply}");
}

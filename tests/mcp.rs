//! `ask mcp`: a scripted MCP client session over stdio against the real
//! binary, as an agent would hold it.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::{json, Value};

use crate::util::*;

/// Sends each request (one JSON text per line) and returns every reply line.
fn session(env: &Env, requests: &[String]) -> Vec<Value> {
    session_of(env.cmd(), requests)
}

/// [`session`] with `cmd` as the `ask` to run.
fn session_of(mut cmd: std::process::Command, requests: &[String]) -> Vec<Value> {
    let mut child = cmd.arg("mcp").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for r in requests {
        writeln!(stdin, "{r}").unwrap();
    }
    drop(stdin); // end of the session
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    BufReader::new(&out.stdout[..]).lines().map(|l| json(l.unwrap().as_bytes())).collect()
}

fn call(id: u64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

#[test]
fn an_agent_lists_the_tools_and_searches_asks_and_reads_status() {
    let env = Env::new();
    env.copy_docs();
    env.index(&["docs"]);
    let replies = session(
        &env,
        &[
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}).to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
            call(3, "search", json!({"query": "when is the deposit returned", "k": 2})),
            call(4, "status", json!({})),
            call(5, "query", json!({"question": "When is the deposit returned?", "k": 1, "max_tokens": 16})),
            json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}).to_string(),
        ],
    );
    // The notification got no reply: six replies, in order.
    let ids: Vec<u64> = replies.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    assert_eq!(replies[0]["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(replies[0]["result"]["serverInfo"]["name"], "ask");
    assert!(replies[0]["result"]["capabilities"]["tools"].is_object());
    let names: Vec<&str> = replies[1]["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["search", "query", "status"]);
    for t in replies[1]["result"]["tools"].as_array().unwrap() {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
    }
    // Search: the objects of `ask search --json`, as structured content and text.
    let search = &replies[2]["result"];
    assert_eq!(search["isError"], false, "{search}");
    let results = search["structuredContent"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(file_name(&results[0]), "tenancy-notes.md");
    let cli = env.search("when is the deposit returned", 2);
    assert_eq!(results[0]["path"], cli[0]["path"]);
    assert_eq!(results[0]["line_start"], cli[0]["line_start"]);
    let text: Value = serde_json::from_str(search["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text, &search["structuredContent"]);
    // Status.
    let status = &replies[3]["result"]["structuredContent"];
    assert_eq!((status["files"].as_u64(), status["encoder"].as_str()), (Some(5), Some("all-MiniLM-L6-v2")), "{status}");
    // Query: an answer and its sources.
    let answer = &replies[4]["result"]["structuredContent"];
    assert!(!answer["answer"].as_str().unwrap().is_empty(), "{answer}");
    assert_eq!(file_name(&answer["sources"][0]), "tenancy-notes.md");
    assert_eq!(replies[5]["result"], json!({}));
}

#[test]
fn bad_requests_get_json_rpc_errors_and_failing_tools_say_why() {
    let env = Env::new();
    let replies = session(
        &env,
        &[
            "{not json".to_owned(),
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}).to_string(),
            call(2, "delete_everything", json!({})),
            call(3, "search", json!({"query": "deposit"})),
            call(4, "search", json!({"query": "deposit", "k": 0})),
            call(5, "status", json!({"index": "../etc"})),
        ],
    );
    assert_eq!(replies.len(), 6);
    assert_eq!((replies[0]["id"].clone(), replies[0]["error"]["code"].as_i64()), (Value::Null, Some(-32700)));
    assert_eq!(replies[1]["error"]["code"], -32601);
    assert_eq!(replies[2]["error"]["code"], -32602);
    assert!(replies[2]["error"]["message"].as_str().unwrap().contains("search, query and status"));
    // No index yet: the tool fails, the session goes on.
    let r = &replies[3]["result"];
    assert_eq!(r["isError"], true, "{r}");
    assert!(r["content"][0]["text"].as_str().unwrap().contains("default"), "{r}");
    assert!(replies[4]["result"]["content"][0]["text"].as_str().unwrap().contains("'k' must be a whole number from 1 to 50"));
    assert!(replies[5]["result"]["content"][0]["text"].as_str().unwrap().contains("invalid index name"));
}

/// With no encoder named, a call on another index uses the encoder that
/// index was built with, as a command run with --index would.
#[test]
fn each_index_is_searched_with_its_own_encoder() {
    let env = Env::new();
    env.copy_docs();
    std::fs::create_dir_all(&env.home).unwrap();
    std::os::unix::fs::symlink(models_dir(), env.home.join("models")).unwrap();
    for (index, encoder) in [("default", "all-MiniLM-L6-v2"), ("other", "all-MiniLM-L6-v2-int8")] {
        let out = env.cmd().env_remove("ASK_EMBED_MODEL").args(["--index", index, "--embed-model", encoder, "index", "docs"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut cmd = env.cmd();
    cmd.env_remove("ASK_EMBED_MODEL");
    let replies = session_of(cmd, &[call(1, "search", json!({"query": "deposit", "k": 1})), call(2, "search", json!({"query": "deposit", "k": 1, "index": "other"}))]);
    for r in &replies {
        assert_eq!(r["result"]["isError"], false, "{r}");
        assert_eq!(file_name(&r["result"]["structuredContent"]["results"][0]), "tenancy-notes.md");
    }
}

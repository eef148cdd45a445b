//! Proof that ask never touches the network: once with no network at all,
//! once watching every socket it opens.

use crate::util::*;

/// Runs `ask ARGS` inside a new network namespace (no interfaces but a down
/// loopback): any connection attempt would fail.
pub(crate) fn ask_unshared(env: &Env, args: &[&str]) -> std::process::Output {
    env.command("unshare").arg("-n").arg(ASK).args(args).output().expect("unshare is installed (util-linux)")
}

#[test]
fn index_and_search_work_without_a_network() {
    let env = Env::new();
    env.copy_docs();
    let out = ask_unshared(&env, &["index", "--json", "docs"]);
    assert!(out.status.success(), "unshare -n ask index: {}", stderr(&out));
    assert_eq!(json(&out.stdout)["new"], 5);
    let out = ask_unshared(&env, &["search", "--json", "deposit", "-k", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(file_name(&json_lines(&out.stdout)[0]), "tenancy-notes.md");
    let out = ask_unshared(&env, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ask_unshared(&env, &["query", "--json", "--max-tokens", "8", "-k", "1", "when is the deposit returned"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!json(&out.stdout)["answer"].as_str().unwrap().is_empty());
    let out = ask_unshared(&env, &["summarize", "--json", "--max-tokens", "8", "docs/sourdough.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!json(&out.stdout)["summary"].as_str().unwrap().is_empty());
    // Private mail, indexed and summarized with no network.
    env.write("mail/inbox.mbox", std::fs::read(fixtures().join("mail/inbox.mbox")).unwrap());
    let out = ask_unshared(&env, &["index", "--json", "mail"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ask_unshared(&env, &["summarize", "--json", "--max-tokens", "8", "--from", "zoe", "mail/inbox.mbox"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out.stdout)["messages"], 1);
}

/// Runs `ask ARGS` under strace and returns every socket/connect call made
/// by any of its threads or children.
pub(crate) fn socket_calls(env: &Env, args: &[&str]) -> Vec<String> {
    let log = env.path(&format!("strace-{}.log", args[0]));
    let mut cmd = env.command("strace");
    cmd.args(["-f", "-e", "trace=socket,connect", "-o"]).arg(&log).arg(ASK).args(args);
    let out = cmd.output().expect("strace is installed");
    assert!(out.status.success(), "strace ask {args:?}: {}", stderr(&out));
    std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn no_inet_socket_is_ever_opened() {
    let env = Env::new();
    env.copy_docs();
    let mut calls = socket_calls(&env, &["index", "docs"]);
    calls.extend(socket_calls(&env, &["search", "deposit"]));
    calls.extend(socket_calls(&env, &["status"]));
    calls.extend(socket_calls(&env, &["query", "--max-tokens", "8", "-k", "1", "when is the deposit returned"]));
    calls.extend(socket_calls(&env, &["summarize", "--max-tokens", "8", "docs/sourdough.txt"]));
    env.write("mail/inbox.mbox", std::fs::read(fixtures().join("mail/inbox.mbox")).unwrap());
    calls.extend(socket_calls(&env, &["index", "mail"]));
    calls.extend(socket_calls(&env, &["summarize", "--max-tokens", "8", "mail/inbox.mbox"]));
    let inet: Vec<&String> = calls.iter().filter(|l| l.contains("AF_INET") || l.contains("AF_INET6")).collect();
    assert!(inet.is_empty(), "network sockets opened:\n{}", inet.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
    // strace did trace the process (guards against a silently empty log).
    assert!(calls.iter().any(|l| l.contains("+++ exited with 0 +++")), "{calls:?}");
}

/// Every file and folder ask creates, by any of its threads or the
/// libraries it loads, lies in its own data directory: nothing in /tmp,
/// nothing in the user's other folders (ONNX Runtime's own builds write
/// a telemetry device id and event store into ~/.cache unless told not
/// to). Runs the commands that read and write user text under strace,
/// with the ONNX encoder, which loads that library.
#[test]
fn nothing_is_written_outside_asks_own_folder() {
    let mut env = Env::new();
    env.encoder = models_dir().join("all-MiniLM-L6-v2-int8");
    env.copy_docs();
    let home = env.home.to_string_lossy().into_owned();
    let runs: [&[&str]; 5] = [
        &["index", "docs"],
        &["search", "deposit"],
        &["query", "--max-tokens", "8", "-k", "1", "when is the deposit returned"],
        &["summarize", "--max-tokens", "8", "docs/sourdough.txt"],
        &["summarize", "--max-tokens", "8", "-"],
    ];
    let mut outside = Vec::new();
    for (i, args) in runs.iter().enumerate() {
        let log = env.path(&format!("strace-files-{i}.log"));
        let mut cmd = env.command("strace");
        cmd.args(["-f", "-y", "-qq", "-e", "trace=openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,symlink,symlinkat", "-o"])
            .arg(&log)
            .arg(ASK)
            .args(*args);
        let out = cmd.stdin(std::process::Stdio::piped()).spawn().and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"Notes from the meeting: the boiler is fixed.\n")?;
            c.wait_with_output()
        });
        let out = out.expect("strace is installed");
        assert!(out.status.success(), "ask {args:?}: {}", stderr(&out));
        let trace = std::fs::read_to_string(&log).unwrap();
        assert!(trace.contains("openat("), "strace traced ask {args:?}");
        for line in trace.lines() {
            let creates = line.contains("O_CREAT") || ["mkdir", "rename", "link(", "linkat(", "symlink"].iter().any(|c| line.contains(c));
            if creates && !line.contains("= -1") && !line.contains(&home) {
                outside.push(format!("ask {}: {line}", args.join(" ")));
            }
        }
    }
    assert!(outside.is_empty(), "created outside {home}:\n{}", outside.join("\n"));
}

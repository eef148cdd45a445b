use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use crate::util::*;

/// The first source of each answer in `ask chat`'s output, by file name.
fn first_sources(text: &str) -> Vec<String> {
    text.split("Sources:\n").skip(1).map(|block| block.lines().next().unwrap_or("").rsplit('/').next().unwrap().split(':').next().unwrap().to_owned()).collect()
}

#[test]
fn piped_chat_answers_each_line_as_a_follow_up() {
    let env = two_tools();
    let out = env.run_with_stdin(
        &["chat", "-k", "1", "--max-tokens", "16"],
        b"Who wrote the Otter backup tool?\n\nWhich port does it listen on by default?\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // Two answers (the blank line is no question), the second about Otter.
    assert_eq!(first_sources(&text), ["otter.md", "otter.md"], "{text}");
    // Kept as a conversation, which `ask query -c` continues.
    let list = json_lines(&env.ok(&["conversations", "--json"]).stdout);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["turns"].as_array().unwrap().len(), 2);
    let next = json(&env.ok(&["query", "-c", "--json", "--max-tokens", "8", "-k", "1", "And who wrote it?"]).stdout);
    assert_eq!(next["conversation"], list[0]["id"]);
}

/// What a process in a pseudo-terminal writes, as it comes.
fn reader(mut out: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads on until `text` holds `want` after byte `from`; a generous limit
/// only turns a hang into a failure.
fn wait_for(rx: &Receiver<Vec<u8>>, text: &mut String, from: usize, want: &str) {
    while !text[from..].contains(want) {
        let chunk = rx.recv_timeout(Duration::from_secs(300)).unwrap_or_else(|_| panic!("no {want:?} in {text:?}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// How the child ended; a generous limit only turns a hang into a failure.
fn ended(child: &mut std::process::Child) -> std::process::ExitStatus {
    for _ in 0..3000 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("still running 300 s after Ctrl-D");
}

/// In a terminal (util-linux's `script` gives ask a pseudo-terminal): two
/// turns answered; Ctrl-C in the middle of the second stops that answer
/// and keeps the session, which /sources and Ctrl-D then use and end.
#[test]
fn chat_on_a_terminal_survives_ctrl_c_and_ends_with_ctrl_d() {
    let env = two_tools();
    // script(1) runs the command with `$SHELL -c`. Without `exec`, a shell
    // that stays (dash does) is in the terminal's foreground group beside
    // ask, so Ctrl-C killed it and script(1) ended 130 while ask went on.
    let command = format!("exec {ASK} chat -k 1 --ignore-eos --max-tokens 400");
    let mut child = env
        .command("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux runs");
    let mut stdin = child.stdin.take().unwrap();
    let rx = reader(child.stdout.take().unwrap());
    let mut text = String::new();
    wait_for(&rx, &mut text, 0, "> ");
    stdin.write_all(b"Who wrote the Otter backup tool?\r").unwrap();
    // The next prompt, after the first answer's sources.
    wait_for(&rx, &mut text, 0, "Sources:");
    let sources = text.find("Sources:").unwrap();
    wait_for(&rx, &mut text, sources, "> ");
    let second = text.len();
    stdin.write_all(b"Which port does it listen on by default?\r").unwrap();
    // The answer has begun: the question's line ends, then text follows.
    wait_for(&rx, &mut text, second, "default?");
    let echoed = second + text[second..].find("default?").unwrap();
    wait_for(&rx, &mut text, echoed, "\n");
    let begun = echoed + text[echoed..].find('\n').unwrap();
    while text.len() < begun + 16 {
        text.push_str(&String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(300)).unwrap()));
    }
    stdin.write_all(b"\x03").unwrap();
    wait_for(&rx, &mut text, second, "(stopped)");
    let stopped = second + text[second..].find("(stopped)").unwrap();
    wait_for(&rx, &mut text, stopped, "Sources:");
    let sources = stopped + text[stopped..].find("Sources:").unwrap();
    wait_for(&rx, &mut text, sources, "> ");
    let third = text.len();
    stdin.write_all(b"/sources\r").unwrap();
    wait_for(&rx, &mut text, third, "9102");
    // Ctrl-D once the line editor reads again: typed earlier, the terminal
    // (not yet raw) would take it as its own end-of-file mark. Standard
    // input stays open until ask has ended, so script(1) never sees an end
    // of its own to pass on.
    let listed = third + text[third..].find("9102").unwrap();
    wait_for(&rx, &mut text, listed, "> ");
    stdin.write_all(b"\x04").unwrap();
    let status = ended(&mut child);
    drop(stdin);
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(10)) {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let mut errors = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut errors);
    // The status last: a long failure message is cut at its start.
    assert!(status.success(), "{text}\nscript(1) wrote: {errors}\nended with {status}");
    // Both turns are kept, the stopped one with the text it had.
    let list = json_lines(&env.ok(&["conversations", "--json"]).stdout);
    let turns = list[0]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{list:?}");
    assert_eq!(turns[1]["question"], "Which port does it listen on by default?");
    assert_eq!(first_sources(&text.replace("\r\n", "\n")).len(), 2, "{text}");
}

//! Helpers for the integration tests: a fresh temporary directory per test,
//! the real `ask` binary, and the real models placed by scripts/fetch-models.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `$OVERRIDE`, else `$XDG_VAR/ask/<rel>`, else `~/<fallback>/ask/<rel>`:
/// where the scripts put what the tests need.
fn scripts_dir(overriding: &str, xdg: &str, fallback: &str, rel: &str) -> PathBuf {
    std::env::var_os(overriding).map(PathBuf::from).unwrap_or_else(|| {
        let base = std::env::var_os(xdg)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(fallback));
        base.join("ask").join(rel)
    })
}

/// Where scripts/fetch-models puts the models (or ASK_TEST_MODELS), read
/// once, before any test's sandbox is set up.
fn models_home() -> PathBuf {
    scripts_dir("ASK_TEST_MODELS", "XDG_DATA_HOME", ".local/share", "models")
}

/// The models directory filled by scripts/fetch-models (or ASK_TEST_MODELS),
/// for a test that uses them: it fails at once, saying how to get them,
/// when they are missing.
pub fn models_dir() -> PathBuf {
    let dir = models_home();
    assert!(
        dir.join("all-MiniLM-L6-v2/model.safetensors").exists(),
        "the real models are missing from {}: run scripts/fetch-models first",
        dir.display()
    );
    dir
}

/// Whether this CPU reports FLAG (as /proc/cpuinfo spells it: `avx512_vnni`,
/// `cpuid_fault`).
pub fn cpu_has(flag: &str) -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default().split_whitespace().any(|f| f == flag)
}

/// The `ask` binary under test.
pub const ASK: &str = env!("CARGO_BIN_EXE_ask");

/// The repository's fixtures directory.
pub fn fixtures() -> PathBuf {
    // Read at run time: a test binary reused from a clone elsewhere (one
    // shared CARGO_TARGET_DIR) would carry that clone's path.
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).join("fixtures")
}

/// A sandbox: its own ASK_HOME, HOME, XDG folders and documents. It needs
/// no models: a test that uses them names them (the defaults point into
/// [`models_dir`], and ask says what is missing).
pub struct Env {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    pub encoder: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        Env { home: root.join("ask-home"), encoder: models_home().join("all-MiniLM-L6-v2"), root, _tmp: tmp }
    }

    /// `ask` with a clean environment pointing at this sandbox.
    pub fn cmd(&self) -> Command {
        self.setup(Command::new(ASK))
    }

    /// `WRAPPER ask`, the same environment as `cmd`: ask run by another
    /// program (benches/avx2-only, say).
    pub fn cmd_under(&self, wrapper: &Path) -> Command {
        let mut cmd = self.command(wrapper);
        cmd.arg(ASK);
        cmd
    }

    /// Another program (strace, unshare, a shell, a Python client) with
    /// the environment and working folder `cmd` gives ask, to run ask
    /// under it ([`ASK`]).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.setup(Command::new(program))
    }

    fn setup(&self, mut cmd: Command) -> Command {
        cmd.current_dir(&self.root)
            // Nothing of the developer's own: other tools' model stores
            // under ~ (~/.ollama, ~/.cache/huggingface, ~/.lmstudio) are
            // only those a test builds.
            .env("HOME", self.root.join("home"))
            .env("XDG_DATA_HOME", self.root.join("data"))
            .env_remove("ASK_INDEX")
            .env_remove("ASK_CONFIG")
            // Other tools' model stores: only those a test builds.
            .env_remove("OLLAMA_MODELS")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_CACHE")
            .env_remove("LLAMA_CACHE")
            .env("ASK_HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("XDG_CACHE_HOME", self.root.join("cache"))
            .env("ASK_EMBED_MODEL", &self.encoder)
            .env("ASK_MODEL", models_home().join("SmolLM2-135M-Instruct.Q4_1.gguf"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ask ARGS`, returning its output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `ask ARGS` with `input` on its standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `ask ARGS` and fails the test unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "ask {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        out
    }

    /// `ask index ARGS --json`, parsed.
    pub fn index(&self, args: &[&str]) -> Value {
        let mut all = vec!["index", "--json"];
        all.extend_from_slice(args);
        json(&self.ok(&all).stdout)
    }

    /// `ask search QUERY --json -k K`, parsed.
    pub fn search(&self, query: &str, k: usize) -> Vec<Value> {
        let k = k.to_string();
        json_lines(&self.ok(&["search", query, "--json", "-k", &k]).stdout)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Copies the fixture documents to `docs/` in the sandbox.
    pub fn copy_docs(&self) -> PathBuf {
        let dest = self.path("docs");
        copy_dir(&fixtures().join("docs"), &dest);
        dest
    }

    pub fn index_dir(&self, name: &str) -> PathBuf {
        self.home.join("indexes").join(name)
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec()).unwrap().lines().map(|l| json(l.as_bytes())).collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The file name of a search hit's path.
pub fn file_name(hit: &Value) -> String {
    Path::new(hit["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned()
}

/// The Python of the virtual environment with the official client
/// packages (`openai`, `mcp`) that scripts/test-clients makes, or
/// ASK_TEST_CLIENTS's.
pub fn python_clients() -> PathBuf {
    let venv = scripts_dir("ASK_TEST_CLIENTS", "XDG_CACHE_HOME", ".cache", "clients");
    let python = venv.join("bin/python");
    assert!(python.exists(), "the client packages are missing from {}: run scripts/test-clients first", venv.display());
    python
}

/// Two tools that both listen on a port: a follow-up that says "it" can
/// only be about the one the first turn named.
pub fn two_tools() -> Env {
    let env = Env::new();
    env.write("tools/kestrel.md", "# Kestrel\n\nKestrel is the sync daemon of the Harbor project, written by Mira Okafor.\n\nWhich port does Kestrel listen on by default? Kestrel listens on TCP port 7441 by default.\n");
    env.write("tools/otter.md", "# Otter\n\nOtter is a backup tool written by Sam Lee. It keeps snapshots in a content-addressed store. Its server uses port 9102.\n");
    env.index(&["tools"]);
    env
}

pub fn first_source(v: &serde_json::Value) -> String {
    v["sources"][0]["path"].as_str().unwrap_or_default().rsplit('/').next().unwrap().to_owned()
}

//! `ask completions` and `ask man`: generated from the same definitions as
//! `--help`, so every subcommand is in them, and a broken config file does
//! not stop them (setup scripts run them before anything is configured).

use crate::util::*;

/// The subcommands `ask --help` lists, read from its output.
fn subcommands(env: &Env) -> Vec<String> {
    let help = String::from_utf8(env.ok(&["--help"]).stdout).unwrap();
    let listed = help.split("Commands:").nth(1).unwrap().split("\n\n").next().unwrap();
    let names: Vec<String> = listed.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| *n != "help").map(str::to_owned).collect();
    assert!(names.len() >= 10 && names.contains(&"index".to_owned()), "{names:?}");
    names
}

#[test]
fn completions_name_every_subcommand_and_bash_accepts_them() {
    let env = Env::new();
    env.write("config/ask/config.toml", "no such key = [");
    let names = subcommands(&env);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env.ok(&["completions", shell]);
        let script = String::from_utf8(out.stdout).unwrap();
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell} completion lacks `{name}`");
        }
    }
    let script = env.write("ask.bash", env.ok(&["completions", "bash"]).stdout);
    let check = std::process::Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    let err = env.run(&["completions", "tcsh"]);
    assert_eq!(err.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_pages_are_written_for_every_subcommand() {
    let env = Env::new();
    let names = subcommands(&env);
    let page = String::from_utf8(env.ok(&["man"]).stdout).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH ask 1"), "{}", &page[..page.len().min(200)]);
    env.ok(&["man", "--dir", "man1"]);
    for name in names.iter().map(|n| format!("ask-{n}.1")).chain(["ask.1".to_owned()]) {
        let text = std::fs::read_to_string(env.path("man1").join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".SH SYNOPSIS"), "{name} is not a manual page");
    }
    let index = std::fs::read_to_string(env.path("man1/ask-index.1")).unwrap();
    assert!(index.contains("\\-\\-chunk\\-tokens"), "the page documents the options");
}

/// `scripts/setup`'s advice when `~/.local/bin` is not on PATH: its check
/// (`path_advice` in scripts/common.sh) run alone, for each shell, with the
/// folder off PATH and on it.
#[test]
fn setup_says_how_to_put_the_install_folder_on_path() {
    let common = fixtures().parent().unwrap().join("scripts/common.sh");
    let advice = |shell: &str, path: &str| {
        let out = std::process::Command::new("bash")
            .args(["-c", ". \"$1\" && path_advice /home/u/.local/bin", "advice"])
            .arg(&common)
            .env("HOME", "/home/u")
            .env("SHELL", shell)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        stderr(&out)
    };
    let off = "/usr/bin:/bin";
    let bash = advice("/bin/bash", off);
    assert!(bash.contains("/home/u/.local/bin is not on your PATH"), "{bash}");
    assert!(bash.contains(r#"echo 'export PATH="$HOME/.local/bin:$PATH"' >> ~/.bashrc"#), "{bash}");
    assert!(advice("/usr/bin/zsh", off).contains(r#"echo 'export PATH="$HOME/.local/bin:$PATH"' >> ~/.zshrc"#));
    assert!(advice("/usr/bin/fish", off).contains("echo 'fish_add_path $HOME/.local/bin' >> ~/.config/fish/config.fish"));
    assert_eq!(advice("/bin/bash", "/usr/bin:/home/u/.local/bin:/bin"), "");
}

/// `--index` and `--embed-model` are global, but `man`, `completions` and
/// `models` use neither: given there on the command line they are a usage
/// error, while the environment's ASK_INDEX (meant for every command) is not.
#[test]
fn global_flags_that_would_do_nothing_are_refused() {
    let env = Env::new();
    for args in [&["models", "--index", "notes"][..], &["man", "--embed-model", "enc"], &["completions", "bash", "--index", "x"]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("does nothing for `ask"), "{args:?}: {}", stderr(&out));
    }
    let out = env.cmd().args(["completions", "bash"]).env("ASK_INDEX", "notes").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Where it is used, it is taken.
    let out = env.run(&["status", "--index", "notes"]);
    assert!(stderr(&out).contains("no index 'notes'"), "{}", stderr(&out));
}

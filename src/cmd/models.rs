//! `ask models`: the answer models and encoders ask can use, from its own
//! models directory and the stores of other tools ([`ask_models::stores`]).

use std::io::Write;

use anyhow::Result;
use ask_models::stores::{Role, Stores};
use tokio::runtime::Runtime;

use super::Run;
use crate::cli::ModelsArgs;
use crate::config::Config;
use crate::exit::Exit;

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.0} MB", b as f64 / 1e6),
        b => format!("{:.0} KB", b as f64 / 1e3),
    }
}

impl Run for ModelsArgs {
    fn run(&self, cfg: &Config, _rt: &Runtime) -> Result<Exit> {
        let scan = Stores::from_env(&cfg.models_dir).scan();
        let mut out = std::io::stdout().lock();
        if self.json {
            for found in &scan.found {
                serde_json::to_writer(&mut out, found)?;
                writeln!(out)?;
            }
        } else {
            let rows: Vec<[String; 7]> = scan
                .found
                .iter()
                .map(|f| {
                    let role = match f.role {
                        Role::Answer => "answer",
                        Role::Encoder => "encoder",
                    };
                    [
                        f.name.clone(),
                        role.into(),
                        f.source.as_str().into(),
                        f.architecture.clone(),
                        // A GGUF's quantization, or what runs an encoder.
                        match (&f.quantization, f.backend) {
                            (Some(q), _) => q.clone(),
                            (None, Some(b)) => b.to_string(),
                            (None, None) => "-".into(),
                        },
                        human_size(f.bytes),
                        f.path.display().to_string(),
                    ]
                })
                .collect();
            for line in super::columns(["NAME", "ROLE", "SOURCE", "ARCH", "FORMAT", "SIZE", "PATH"], &rows) {
                writeln!(out, "{line}")?;
            }
            if scan.found.is_empty() && !cfg.quiet {
                eprintln!(
                    "ask: no models in {0} or in other tools' stores; run scripts/fetch-models in ask's source folder, \
                     or put GGUF files (answers) and encoder folders in {0}",
                    cfg.models_dir.display()
                );
            }
        }
        if self.verbose {
            for s in &scan.skipped {
                eprintln!("ask: skipped {}: {}", s.path.display(), s.why);
            }
        } else if !scan.skipped.is_empty() && !cfg.quiet && !self.json {
            eprintln!("ask: {} file(s) passed over (not models ask can run); -v says which and why", scan.skipped.len());
        }
        Ok(Exit::Success)
    }
}

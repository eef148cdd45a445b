//! From parsed flags to a resolved configuration (ripgrep's "high args").
//!
//! Precedence: flags, then environment (clap reads `ASK_*` variables for the
//! flags that have one), then the config file, then defaults. Library code
//! receives plain paths and never sees clap.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cli::GlobalArgs;

/// The default encoders under `<home>/models`, best first: all-MiniLM-L6-v2
/// as int8 ONNX (as good on msmarco-5k and a quarter faster, see
/// docs/design.md), else its f32 weights on candle where ONNX Runtime was not
/// fetched. The first one present is the default.
pub const DEFAULT_ENCODERS: [&str; 2] = ["all-MiniLM-L6-v2-int8", "all-MiniLM-L6-v2"];

/// The default encoder's folder: the first of [`DEFAULT_ENCODERS`] that
/// is there, else the first (so that the error names it).
fn default_encoder(models_dir: &Path) -> PathBuf {
    DEFAULT_ENCODERS
        .iter()
        .map(|n| models_dir.join(n))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| models_dir.join(DEFAULT_ENCODERS[0]))
}

/// The encoder called `name` in `models_dir`: the folder of that name, or
/// the GGUF file that is that name and `.gguf`, or else the one that is
/// that name, a type and `.gguf`.
fn named_encoder(models_dir: &Path, name: &Path) -> Option<PathBuf> {
    let dir = models_dir.join(name);
    if dir.exists() {
        return Some(dir);
    }
    let file = models_dir.join(format!("{}.gguf", name.to_str()?));
    if file.is_file() {
        return Some(file);
    }
    let stem = format!("{}.", name.to_str()?);
    let mut files = std::fs::read_dir(models_dir).ok()?.flatten().map(|e| e.path()).filter(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&stem) && n.ends_with(".gguf") && n[stem.len()..].matches('.').count() == 1)
    });
    let found = files.next()?;
    files.next().is_none().then_some(found)
}

/// The encoder (a folder, or one GGUF file): the one named, else the one
/// the index in `index_dir` was built with if it is in the models
/// directory (an index keeps working when the default changes), else the
/// default.
fn encoder(named: Option<&Path>, index_dir: &Path, models_dir: &Path) -> PathBuf {
    if let Some(p) = named {
        return p.to_path_buf();
    }
    ask_store::IndexMeta::load(index_dir)
        .ok()
        .flatten()
        .map(|m| models_dir.join(m.encoder))
        // A folder, or one GGUF file.
        .filter(|d| d.exists())
        .unwrap_or_else(|| default_encoder(models_dir))
}

/// The config file's keys. Unknown keys are an error, so a typo is caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Index used when --index is not given.
    index: Option<String>,
    /// Encoder directory.
    embed_model: Option<PathBuf>,
    /// GGUF model for answers.
    model: Option<PathBuf>,
}

/// Where things are, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// `$ASK_HOME`, else `$XDG_DATA_HOME/ask`, else `~/.local/share/ask`.
    pub home: PathBuf,
    /// The index name.
    pub index_name: String,
    /// `<home>/indexes/<name>`.
    pub index_dir: PathBuf,
    /// Encoder directory.
    pub embed_model: PathBuf,
    /// The encoder the flag, environment or config file named, if any
    /// (else `embed_model` follows the index).
    pub(crate) embed_named: Option<PathBuf>,
    /// `<home>/models`, where model names are looked up.
    pub models_dir: PathBuf,
    /// The answer model as the config file names it, else the default's
    /// short name (a flag or ASK_MODEL wins: [`Config::answer_model`]).
    pub model: PathBuf,
    /// Print nothing but errors.
    pub quiet: bool,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home_dir() -> Option<PathBuf> {
    env_path("HOME")
}

/// The data directory.
pub fn data_home() -> Result<PathBuf> {
    if let Some(home) = env_path("ASK_HOME") {
        return Ok(home);
    }
    if let Some(xdg) = env_path("XDG_DATA_HOME") {
        return Ok(xdg.join("ask"));
    }
    match home_dir() {
        Some(h) => Ok(h.join(".local/share/ask")),
        None => bail!("could not find a data directory: HOME is not set; set ASK_HOME to where ask should keep its indexes and models"),
    }
}

/// The cache directory, for data ask can rebuild (`ask eval`'s scratch
/// indexes): `$XDG_CACHE_HOME/ask`, else `~/.cache/ask`.
pub fn cache_home() -> Result<PathBuf> {
    if let Some(xdg) = env_path("XDG_CACHE_HOME") {
        return Ok(xdg.join("ask"));
    }
    match home_dir() {
        Some(h) => Ok(h.join(".cache/ask")),
        None => bail!("could not find a cache directory: HOME is not set; set XDG_CACHE_HOME"),
    }
}

/// The config file path (it need not exist).
pub fn config_file() -> Option<PathBuf> {
    if let Some(p) = env_path("ASK_CONFIG") {
        return Some(p);
    }
    if let Some(xdg) = env_path("XDG_CONFIG_HOME") {
        return Some(xdg.join("ask/config.toml"));
    }
    home_dir().map(|h| h.join(".config/ask/config.toml"))
}

fn load_file_config() -> Result<FileConfig> {
    let Some(path) = config_file() else { return Ok(FileConfig::default()) };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("ASK_CONFIG").is_none() => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
    }
}

/// Index names become directory names: keep them to one safe component.
fn check_index_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("invalid index name '{name}': use letters, digits, '-', '_' and '.', not starting with '.'");
    }
    Ok(())
}

impl Config {
    /// Resolves the global options.
    pub fn resolve(global: &GlobalArgs) -> Result<Config> {
        let file = load_file_config()?;
        let home = data_home()?;
        let index_name = global.index.clone().or(file.index).unwrap_or_else(|| "default".into());
        check_index_name(&index_name)?;
        let index_dir = home.join("indexes").join(&index_name);
        let models_dir = home.join("models");
        let embed_named = global.embed_model.clone().or(file.embed_model).map(|p| match p {
            // A bare name that is nothing here is an encoder in the models
            // directory: a folder, or a GGUF file with its name and type
            // ("nomic-embed-text-v1.5" for nomic-embed-text-v1.5.f16.gguf).
            p if !p.exists() && p.components().count() == 1 => named_encoder(&models_dir, &p).unwrap_or(p),
            p => p,
        });
        let embed_model = encoder(embed_named.as_deref(), &index_dir, &models_dir);
        let model = file.model.unwrap_or_else(|| PathBuf::from(ask_models::catalog::DEFAULT));
        Ok(Config { home, index_name, index_dir, embed_model, embed_named, models_dir, model, quiet: global.quiet })
    }

    /// Where answer models keep the keys and values of the prompt's
    /// opening between runs ([`ask_engine::Generator::keep_opening`]): a
    /// cache, in ask's own folder like everything ask writes.
    pub fn openings(&self) -> PathBuf {
        self.home.join("openings")
    }

    /// This configuration with another index (for a request that names one).
    pub fn with_index(&self, name: &str) -> Result<Config> {
        check_index_name(name)?;
        let index_dir = self.home.join("indexes").join(name);
        let embed_model = encoder(self.embed_named.as_deref(), &index_dir, &self.models_dir);
        Ok(Config { index_name: name.to_owned(), index_dir, embed_model, ..self.clone() })
    }

    /// The GGUF file to answer with: `flag` (`--model` or ASK_MODEL), else
    /// the config file's `model`, else the default; each may be a path, a
    /// short name (`smollm2`) or a file name in the models directory.
    pub fn answer_model(&self, flag: Option<&Path>) -> Result<PathBuf> {
        let spec = flag.unwrap_or(&self.model);
        Ok(ask_models::stores::Stores::from_env(&self.models_dir).resolve(&spec.to_string_lossy())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoder_is_named_by_its_folder_or_its_gguf_files_name() {
        let models = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(models.path().join(name), b"").unwrap();
        touch("nomic-embed-text-v1.5.f16.gguf");
        touch("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
        std::fs::create_dir(models.path().join("all-MiniLM-L6-v2")).unwrap();
        let named = |name: &str| named_encoder(models.path(), Path::new(name)).map(|p| p.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(named("nomic-embed-text-v1.5").as_deref(), Some("nomic-embed-text-v1.5.f16.gguf"));
        assert_eq!(named("nomic-embed-text-v1.5.f16.gguf").as_deref(), Some("nomic-embed-text-v1.5.f16.gguf"));
        assert_eq!(named("nomic-embed-text-v1.5.f16").as_deref(), Some("nomic-embed-text-v1.5.f16.gguf"));
        assert_eq!(named("all-MiniLM-L6-v2").as_deref(), Some("all-MiniLM-L6-v2"));
        // Not a name and one type: "qwen2.5-coder-1.5b-instruct" would be
        // "q4_k_m" and more.
        assert_eq!(named("qwen2.5-coder-1.5b"), None);
        assert_eq!(named("nomic"), None);
        // Two types of one name: neither is guessed.
        touch("nomic-embed-text-v1.5.q8_0.gguf");
        assert_eq!(named("nomic-embed-text-v1.5"), None);
    }

    #[test]
    fn index_names_cannot_escape_the_indexes_dir() {
        assert!(check_index_name("notes-2024").is_ok());
        for bad in ["", "..", "../x", "a/b", ".hidden"] {
            assert!(check_index_name(bad).is_err(), "{bad}");
        }
    }
}

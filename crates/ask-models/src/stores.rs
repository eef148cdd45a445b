//! Models already on this machine, where other tools keep them: ask's own
//! models directory, Ollama's store, the Hugging Face hub cache, LM Studio
//! and llama.cpp's cache. Nothing is copied: ask reads the files in place.
//!
//! A `--model` value is resolved against all of them ([`Stores::resolve`]):
//!
//! - a path to a file;
//! - a short name of ask's own models (`qwen2.5-coder-1.5b`, `smollm2`, …)
//!   or a GGUF file in ask's models directory, which come first;
//! - an Ollama name, `model[:tag]` or `namespace/model[:tag]` (tag `latest`
//!   when left out), as `ollama list` shows it;
//! - a repository, `Org/Name` (a Hugging Face repository in the hub cache,
//!   or an LM Studio `publisher/model` folder), optionally with `:QUANT`
//!   (`Org/Name:Q8_0`) or `/FILE.gguf`: of several GGUF files, the one in
//!   Q4_K_M if there is one, else the smallest;
//! - a GGUF file name, with or without `.gguf`, anywhere in the stores.
//!
//! A value several different files answer to is an error listing them.
//! What a file is comes from its GGUF header (`general.architecture`,
//! `general.file_type`), never from its name.

use std::path::{Path, PathBuf};

use serde::Serialize;

use ask_engine::ModelError;

/// Where a model was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// ask's own models directory.
    Ask,
    /// Ollama's store.
    Ollama,
    /// The Hugging Face hub cache.
    #[serde(rename = "huggingface")]
    HuggingFace,
    /// LM Studio's models folder.
    #[serde(rename = "lmstudio")]
    LmStudio,
    /// llama.cpp's download cache.
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
}

impl Origin {
    /// The name `ask models` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Ask => "ask",
            Origin::Ollama => "ollama",
            Origin::HuggingFace => "huggingface",
            Origin::LmStudio => "lmstudio",
            Origin::LlamaCpp => "llama.cpp",
        }
    }
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A GGUF decoder for `--model`.
    Answer,
    /// A sentence encoder folder for `--embed-model`.
    Encoder,
}

/// A model ask can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The name `--model` accepts for it; for an encoder, its folder's name
    /// (which `--embed-model` accepts for ask's own) or repository.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// Where it was found.
    pub source: Origin,
    /// `general.architecture` of a GGUF file; `model_type` of an encoder.
    pub architecture: String,
    /// The quantization a GGUF header names (`Q4_K_M`, …); none for an
    /// encoder.
    pub quantization: Option<String>,
    /// What runs an encoder (`candle`, `onnx`); none for a GGUF.
    pub backend: Option<ask_embed::Backend>,
    /// Size in bytes (of the weights file).
    pub bytes: u64,
    /// The file (or the encoder's folder).
    pub path: PathBuf,
}

/// A file that looked like a model but is not one ask can use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The file or folder.
    pub path: PathBuf,
    /// Why it was skipped.
    pub why: String,
}

/// What a scan of the stores found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Usable models, by source, then name.
    pub found: Vec<Found>,
    /// Files that are not usable, with the reason.
    pub skipped: Vec<Skipped>,
}

/// The folders to look in.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    /// ask's own models directory.
    pub ask: PathBuf,
    /// Ollama's model folders (each holding `manifests/` and `blobs/`).
    pub ollama: Vec<PathBuf>,
    /// The Hugging Face hub cache (holding `models--ORG--NAME/`).
    pub hf_hub: Option<PathBuf>,
    /// LM Studio's models folders (holding `PUBLISHER/MODEL/*.gguf`).
    pub lmstudio: Vec<PathBuf>,
    /// llama.cpp's cache.
    pub llama_cpp: Option<PathBuf>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

impl Stores {
    /// The stores of this machine, as each tool's documentation places
    /// them: `OLLAMA_MODELS`, else `~/.ollama/models` and
    /// `/usr/share/ollama/.ollama/models`; `HF_HUB_CACHE`, else
    /// `HF_HOME/hub`, else `~/.cache/huggingface/hub`; `~/.lmstudio/models`
    /// and `~/.cache/lm-studio/models`; `LLAMA_CACHE`, else
    /// `~/.cache/llama.cpp`.
    pub fn from_env(ask_models: &Path) -> Stores {
        Stores::from_vars(ask_models, env_path)
    }

    /// [`Stores::from_env`] with the variables read by `var`.
    fn from_vars(ask_models: &Path, var: impl Fn(&str) -> Option<PathBuf>) -> Stores {
        let home = var("HOME");
        let under_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
        let ollama = match var("OLLAMA_MODELS") {
            Some(p) => vec![p],
            None => under_home(".ollama/models").into_iter().chain([PathBuf::from("/usr/share/ollama/.ollama/models")]).collect(),
        };
        let hf_hub = var("HF_HUB_CACHE").or_else(|| var("HF_HOME").map(|h| h.join("hub"))).or_else(|| under_home(".cache/huggingface/hub"));
        let lmstudio = [under_home(".lmstudio/models"), under_home(".cache/lm-studio/models")].into_iter().flatten().collect();
        let llama_cpp = var("LLAMA_CACHE").or_else(|| under_home(".cache/llama.cpp"));
        Stores { ask: ask_models.to_path_buf(), ollama, hf_hub, lmstudio, llama_cpp }
    }

    /// Every model in the stores, and what was passed over.
    pub fn scan(&self) -> Listing {
        let mut scan = Listing::default();
        for c in self.candidates() {
            scan.add(c);
        }
        self.scan_encoders(&mut scan);
        scan.found.sort_by(|a, b| (a.source, &a.name).cmp(&(b.source, &b.name)));
        scan
    }

    /// The GGUF file `spec` names (see the module comment).
    pub fn resolve(&self, spec: &str) -> Result<PathBuf, ModelError> {
        let as_path = Path::new(spec);
        if as_path.is_file() {
            return Ok(as_path.to_path_buf());
        }
        if let Some((_, file)) = crate::catalog::KNOWN.iter().find(|(name, _)| name.eq_ignore_ascii_case(spec)) {
            let path = self.ask.join(file);
            if path.is_file() {
                return Ok(path);
            }
            return Err(ModelError::Missing { path, what: "GGUF model" });
        }
        // ask's own directory first: a file put there is the user's choice.
        let bare = spec.strip_suffix(".gguf").unwrap_or(spec);
        let own = self.ask.join(format!("{bare}.gguf"));
        if own.is_file() {
            return Ok(own);
        }
        let candidates: Vec<GgufFile> = self.candidates().into_iter().filter(|c| c.answers_to(spec)).collect();
        let mut runnable: Vec<(GgufFile, Found)> = Vec::new();
        let mut refused: Vec<Skipped> = Vec::new();
        for c in candidates {
            match c.inspect() {
                Ok(found) => runnable.push((c, found)),
                Err(skipped) => refused.push(skipped),
            }
        }
        // A repository with several files: its Q4_K_M, else its smallest.
        if runnable.len() > 1 && runnable.iter().all(|(c, _)| c.repo.is_some() && c.repo == runnable[0].0.repo) && !spec.contains(':') {
            let pick = runnable
                .iter()
                .position(|(_, f)| f.quantization.as_deref() == Some("Q4_K_M"))
                .unwrap_or_else(|| (0..runnable.len()).min_by_key(|&i| runnable[i].1.bytes).expect("not empty"));
            return Ok(runnable.swap_remove(pick).1.path);
        }
        let mut paths: Vec<&Found> = Vec::new();
        for (_, f) in &runnable {
            if !paths.iter().any(|p| same_file(&p.path, &f.path)) {
                paths.push(f);
            }
        }
        match paths.as_slice() {
            [one] => Ok(one.path.clone()),
            [] => {
                if let Some(s) = refused.first() {
                    return Err(ModelError::Invalid { path: s.path.clone(), message: s.why.clone() });
                }
                if as_path.is_absolute() || (spec.contains('/') && !looks_like_repo(spec)) {
                    return Ok(as_path.to_path_buf());
                }
                Err(ModelError::UnknownModel { spec: as_path.to_path_buf(), searched: self.ask.clone(), known: self.known() })
            }
            many => {
                let list: Vec<String> = many.iter().map(|f| format!("{} ({}, {})", f.name, f.source.as_str(), f.path.display())).collect();
                Err(ModelError::Invalid {
                    path: as_path.to_path_buf(),
                    message: format!("names {} models; give one of: {}", many.len(), list.join("; ")),
                })
            }
        }
    }

    /// The answer models `--model` could name, ask's own short names first.
    fn known(&self) -> Vec<String> {
        let scan = self.scan();
        let mut names: Vec<String> = crate::catalog::KNOWN.iter().filter(|(_, f)| self.ask.join(f).is_file()).map(|(n, _)| n.to_string()).collect();
        for f in scan.found.iter().filter(|f| f.role == Role::Answer) {
            if !crate::catalog::KNOWN.iter().any(|(_, file)| f.path == self.ask.join(file)) {
                names.push(f.name.clone());
            }
        }
        names
    }

    /// Every GGUF file of every store, with the names it answers to.
    fn candidates(&self) -> Vec<GgufFile> {
        let mut out = Vec::new();
        for path in gguf_files(&self.ask, 1) {
            let name = file_stem(&path);
            let short = crate::catalog::KNOWN.iter().find(|(_, f)| path.file_name().is_some_and(|n| n == *f)).map(|(n, _)| n.to_string());
            out.push(GgufFile { name: short.unwrap_or(name), source: Origin::Ask, repo: None, path, aliases: Vec::new() });
        }
        for root in &self.ollama {
            out.extend(ollama_models(root));
        }
        if let Some(hub) = &self.hf_hub {
            out.extend(hf_models(hub));
        }
        for root in &self.lmstudio {
            for publisher in subdirs(root) {
                for model in subdirs(&publisher) {
                    let repo = format!("{}/{}", file_name_of(&publisher), file_name_of(&model));
                    for path in gguf_files(&model, 2) {
                        out.push(GgufFile { name: format!("{repo}/{}", file_name_of(&path)), source: Origin::LmStudio, repo: Some(repo.clone()), path, aliases: Vec::new() });
                    }
                }
            }
        }
        if let Some(cache) = &self.llama_cpp {
            for path in gguf_files(cache, 4) {
                out.push(GgufFile { name: file_name_of(&path), source: Origin::LlamaCpp, repo: None, path, aliases: Vec::new() });
            }
        }
        out
    }

    /// Sentence-encoder folders in ask's directory and the hub cache.
    fn scan_encoders(&self, scan: &mut Listing) {
        let mut dirs: Vec<(Origin, String, PathBuf)> = subdirs(&self.ask).into_iter().map(|d| (Origin::Ask, file_name_of(&d), d)).collect();
        if let Some(hub) = &self.hf_hub {
            for (repo, snapshot) in hf_snapshots(hub) {
                dirs.push((Origin::HuggingFace, repo, snapshot));
            }
        }
        for (source, name, dir) in dirs {
            if !dir.join("config.json").is_file() || !dir.join("tokenizer.json").is_file() {
                continue;
            }
            let weights = [dir.join("model.safetensors"), dir.join("model.onnx"), dir.join("onnx/model.onnx")].into_iter().find(|p| p.is_file());
            let Some(weights) = weights else { continue };
            match ask_embed::probe(&dir) {
                Ok(info) => {
                    let architecture = std::fs::read(dir.join("config.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["model_type"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    scan.found.push(Found {
                        name,
                        role: Role::Encoder,
                        source,
                        architecture,
                        quantization: None,
                        backend: Some(info.backend),
                        bytes: size_of(&weights),
                        path: dir,
                    });
                }
                Err(e) => scan.skipped.push(Skipped { path: dir, why: e.to_string() }),
            }
        }
    }
}

/// `Org/Name` or `Org/Name:QUANT`, not a relative path such as `x/y.gguf`.
fn looks_like_repo(spec: &str) -> bool {
    let head = spec.split(':').next().unwrap_or(spec);
    !spec.starts_with('/') && !spec.starts_with('.') && head.split('/').count() == 2 && !head.to_ascii_lowercase().ends_with(".gguf")
}

/// One GGUF file and the names it answers to.
#[derive(Debug, Clone)]
struct GgufFile {
    /// The name `ask models` shows.
    name: String,
    source: Origin,
    /// `Org/Name` for a repository's file (Hugging Face, LM Studio).
    repo: Option<String>,
    path: PathBuf,
    /// Other names (Ollama's `model:latest` is also `model`).
    aliases: Vec<String>,
}

impl GgufFile {
    fn answers_to(&self, spec: &str) -> bool {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if eq(&self.name, spec) || self.aliases.iter().any(|a| eq(a, spec)) {
            return true;
        }
        let file = file_name_of(&self.path);
        if self.source != Origin::Ollama && (eq(&file, spec) || eq(file.strip_suffix(".gguf").unwrap_or(&file), spec)) {
            return true;
        }
        let Some(repo) = &self.repo else { return false };
        if eq(repo, spec) {
            return true;
        }
        // Org/Name:QUANT, matched against the file's name (Q4_K_M in
        // "qwen2.5-1.5b-instruct-q4_k_m.gguf"); Org/Name/FILE.
        if let Some((r, quant)) = spec.rsplit_once(':') {
            return eq(repo, r) && file.to_ascii_lowercase().contains(&quant.to_ascii_lowercase());
        }
        if let Some((r, f)) = spec.rsplit_once('/') {
            return eq(repo, r) && (eq(&file, f) || eq(file.strip_suffix(".gguf").unwrap_or(&file), f));
        }
        false
    }

    /// Reads the header: a model ask can run, or why not.
    fn inspect(&self) -> Result<Found, Skipped> {
        let skip = |why: String| Skipped { path: self.path.clone(), why };
        if split_part(&self.path) {
            return Err(skip("one part of a split GGUF file; ask reads single-file models (join the parts with llama.cpp's gguf-split --merge)".into()));
        }
        let (architecture, quantization) = gguf_header(&self.path).map_err(skip)?;
        if ask_embed::GGUF_ARCHITECTURES.contains(&architecture.as_str()) {
            // Named as --embed-model takes it: without the type after the
            // name ("nomic-embed-text-v1.5" for nomic-embed-text-v1.5.f16).
            let name = match (self.source, &quantization) {
                (Origin::Ask, Some(q)) => self.name.rsplit_once('.').filter(|(_, t)| t.eq_ignore_ascii_case(q)).map_or(self.name.clone(), |(n, _)| n.to_owned()),
                _ => self.name.clone(),
            };
            let backend = ask_embed::probe(&self.path).map_err(|e| skip(e.to_string()))?.backend;
            return Ok(Found { name, role: Role::Encoder, source: self.source, architecture, quantization, backend: Some(backend), bytes: size_of(&self.path), path: self.path.clone() });
        }
        if !ask_engine::ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(skip(format!(
                "architecture '{architecture}' is not one ask runs ({})",
                ask_engine::ARCHITECTURES.join(", ")
            )));
        }
        Ok(Found {
            name: self.name.clone(),
            role: Role::Answer,
            source: self.source,
            architecture,
            quantization,
            backend: None,
            bytes: size_of(&self.path),
            path: self.path.clone(),
        })
    }
}

impl Listing {
    fn add(&mut self, c: GgufFile) {
        match c.inspect() {
            Ok(f) => self.found.push(f),
            Err(s) => self.skipped.push(s),
        }
    }
}

/// `general.architecture` and the quantization `general.file_type` names,
/// from a GGUF header (the tensors are not read).
fn gguf_header(path: &Path) -> Result<(String, Option<String>), String> {
    use candle_core::quantized::gguf_file;
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut file, &mut magic).map_err(|_| "not a GGUF file (too short)".to_string())?;
    if &magic != b"GGUF" {
        return Err("not a GGUF file (no GGUF magic)".into());
    }
    std::io::Seek::rewind(&mut file).map_err(|e| e.to_string())?;
    let content = gguf_file::Content::read(&mut std::io::BufReader::new(file)).map_err(|e| format!("unreadable GGUF header: {e}"))?;
    let architecture = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .ok_or_else(|| "GGUF header names no general.architecture".to_string())?;
    let quantization = content.metadata.get("general.file_type").and_then(|v| v.to_u32().ok()).and_then(file_type_name).map(str::to_owned);
    Ok((architecture, quantization))
}

/// llama.cpp's names for `general.file_type` (its `llama_ftype` values).
fn file_type_name(t: u32) -> Option<&'static str> {
    Some(match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

/// `NAME-00002-of-00003.gguf`: a part of a split model.
fn split_part(path: &Path) -> bool {
    let name = file_name_of(path);
    let Some(stem) = name.strip_suffix(".gguf") else { return false };
    let number = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    parts.len() == 4 && number(parts[0]) && parts[1] == "of" && number(parts[2])
}

/// Ollama's store: `manifests/HOST/NAMESPACE/MODEL/TAG` are JSON manifests
/// whose layer of media type `application/vnd.ollama.image.model` names
/// the GGUF blob `blobs/sha256-HEX`.
fn ollama_models(root: &Path) -> Vec<GgufFile> {
    let mut out = Vec::new();
    for host in subdirs(&root.join("manifests")) {
        for namespace in subdirs(&host) {
            for model in subdirs(&namespace) {
                let Ok(tags) = std::fs::read_dir(&model) else { continue };
                for tag in tags.flatten().map(|e| e.path()).filter(|p| p.is_file()) {
                    let Some(blob) = ollama_blob(root, &tag) else { continue };
                    let (host, ns, m, t) = (file_name_of(&host), file_name_of(&namespace), file_name_of(&model), file_name_of(&tag));
                    // Names as `ollama list` shows them.
                    let base = if host == "registry.ollama.ai" && ns == "library" {
                        m.clone()
                    } else if host == "registry.ollama.ai" {
                        format!("{ns}/{m}")
                    } else {
                        format!("{host}/{ns}/{m}")
                    };
                    let aliases = if t == "latest" { vec![base.clone()] } else { Vec::new() };
                    out.push(GgufFile { name: format!("{base}:{t}"), source: Origin::Ollama, repo: None, path: blob, aliases });
                }
            }
        }
    }
    out
}

fn ollama_blob(root: &Path, manifest: &Path) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
    let layer = v["layers"].as_array()?.iter().find(|l| l["mediaType"] == "application/vnd.ollama.image.model")?;
    let digest = layer["digest"].as_str()?;
    let hex = digest.strip_prefix("sha256:")?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(root.join("blobs").join(format!("sha256-{hex}")))
}

/// The hub cache's repositories and the snapshot each one's `refs/main`
/// names (else its newest snapshot).
fn hf_snapshots(hub: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for repo_dir in subdirs(hub) {
        let name = file_name_of(&repo_dir);
        let Some(rest) = name.strip_prefix("models--") else { continue };
        let Some((org, model)) = rest.split_once("--") else { continue };
        let snapshots = repo_dir.join("snapshots");
        let main = std::fs::read_to_string(repo_dir.join("refs/main")).ok().map(|s| snapshots.join(s.trim()));
        let snapshot = match main.filter(|p| p.is_dir()) {
            Some(p) => p,
            None => match subdirs(&snapshots).into_iter().max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok()) {
                Some(p) => p,
                None => continue,
            },
        };
        out.push((format!("{org}/{model}"), snapshot));
    }
    out
}

fn hf_models(hub: &Path) -> Vec<GgufFile> {
    let mut out = Vec::new();
    for (repo, snapshot) in hf_snapshots(hub) {
        for path in gguf_files(&snapshot, 3) {
            let rel = path.strip_prefix(&snapshot).unwrap_or(&path).to_string_lossy().into_owned();
            out.push(GgufFile { name: format!("{repo}/{rel}"), source: Origin::HuggingFace, repo: Some(repo.clone()), path, aliases: Vec::new() });
        }
    }
    out
}

/// `*.gguf` files under `dir`, at most `depth` folders down, sorted.
fn gguf_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let path = e.path();
        // Follow symbolic links: the hub cache's snapshots are links to blobs.
        if path.is_dir() {
            if depth > 1 {
                out.extend(gguf_files(&path, depth - 1));
            }
        } else if path.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default();
    out.sort();
    out
}

fn file_name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn file_stem(path: &Path) -> String {
    let name = file_name_of(path);
    name.strip_suffix(".gguf").map(str::to_owned).unwrap_or(name)
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;

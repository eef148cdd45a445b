//! Which file a `--model` value names.
//!
//! A value is a path when it names an existing file or has a folder in it;
//! otherwise it is a name looked up in the models directory: one of the
//! short names of the models `scripts/fetch-models` places
//! (`qwen2.5-coder-1.5b`, `smollm2`, `gemma3-270m`), or the name of a GGUF
//! file there, with or without `.gguf`. The short names only spare typing:
//! what a file can do is decided by its `general.architecture` when it is
//! loaded, never by its name.

use std::path::{Path, PathBuf};

use crate::ModelError;

/// The short names and the files they stand for, in the models directory.
/// The first is the default answer model.
pub const KNOWN: &[(&str, &str)] = &[
    ("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
    ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf"),
];

/// The default answer model's short name.
pub const DEFAULT: &str = KNOWN[0].0;

/// The file name `spec` stands for, whether or not the file is there: a
/// short name's file, else the last part of the path or name. Reports
/// name a model this way, found or not.
pub fn file_name(spec: &Path) -> String {
    let text = spec.to_string_lossy();
    match KNOWN.iter().find(|(name, _)| name.eq_ignore_ascii_case(&text)) {
        Some((_, file)) => (*file).to_owned(),
        None => spec.file_name().unwrap_or(spec.as_os_str()).to_string_lossy().into_owned(),
    }
}

/// The file `spec` names (see the module comment). A short name whose file
/// is missing, or a name that matches nothing, is an error that lists what
/// the models directory holds.
pub fn resolve(spec: &Path, models: &Path) -> Result<PathBuf, ModelError> {
    let text = spec.to_string_lossy();
    if spec.is_file() || spec.components().count() > 1 || spec.is_absolute() {
        return Ok(spec.to_path_buf());
    }
    if let Some((_, file)) = KNOWN.iter().find(|(name, _)| name.eq_ignore_ascii_case(&text)) {
        let path = models.join(file);
        if path.is_file() {
            return Ok(path);
        }
        return Err(ModelError::Missing { path, what: "GGUF model" });
    }
    for candidate in [models.join(spec), models.join(format!("{text}.gguf"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let mut names: Vec<String> = KNOWN.iter().filter(|(_, f)| models.join(f).is_file()).map(|(n, _)| n.to_string()).collect();
    if let Ok(dir) = std::fs::read_dir(models) {
        let mut files: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".gguf") && !KNOWN.iter().any(|(_, f)| f == n))
            .collect();
        files.sort();
        names.extend(files);
    }
    let known = if names.is_empty() { "none; run scripts/fetch-models".to_owned() } else { names.join(", ") };
    Err(ModelError::Invalid {
        path: spec.to_path_buf(),
        message: format!("no such model file, and no model of that name in {} (there: {known})", models.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_the_file_a_spec_stands_for() {
        assert_eq!(file_name(Path::new("smollm2")), "SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(file_name(Path::new("Qwen2.5-Coder-1.5B")), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
        assert_eq!(file_name(Path::new("/models/phi-3-mini.Q4_0.gguf")), "phi-3-mini.Q4_0.gguf");
        assert_eq!(file_name(Path::new("phi-3-mini")), "phi-3-mini");
    }

    #[test]
    fn names_paths_and_files_of_the_models_directory() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        std::fs::write(models.join("SmolLM2-135M-Instruct.Q4_1.gguf"), b"GGUF").unwrap();
        std::fs::write(models.join("phi-3-mini.Q4_0.gguf"), b"GGUF").unwrap();
        let smol = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(resolve(Path::new("smollm2"), &models).unwrap(), smol);
        assert_eq!(resolve(Path::new("SmolLM2"), &models).unwrap(), smol, "short names ignore case");
        assert_eq!(resolve(Path::new("phi-3-mini.Q4_0"), &models).unwrap(), models.join("phi-3-mini.Q4_0.gguf"));
        assert_eq!(resolve(Path::new("phi-3-mini.Q4_0.gguf"), &models).unwrap(), models.join("phi-3-mini.Q4_0.gguf"));
        // A path is taken as it is, even when it does not exist (loading says so).
        assert_eq!(resolve(&smol, &models).unwrap(), smol);
        assert_eq!(resolve(Path::new("x/y.gguf"), &models).unwrap(), PathBuf::from("x/y.gguf"));
    }

    #[test]
    fn a_missing_model_is_an_error_that_lists_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"), b"GGUF").unwrap();
        std::fs::write(dir.path().join("mine.gguf"), b"GGUF").unwrap();
        let err = resolve(Path::new("llama9"), dir.path()).unwrap_err().to_string();
        assert!(err.contains("llama9") && err.contains("smollm2, mine.gguf"), "{err}");
        // A short name whose file was not fetched names the file it looked for.
        let err = resolve(Path::new("qwen2.5-coder-1.5b"), dir.path()).unwrap_err();
        assert!(matches!(&err, ModelError::Missing { path, .. } if path.ends_with("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")), "{err}");
    }
}

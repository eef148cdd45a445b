//! The short names of the models `scripts/fetch-models` places
//! (`qwen2.5-coder-1.5b`, `smollm2`, `gemma3-270m`): data only. Which file
//! a `--model` value names is [`crate::stores`]'s to say. The short names
//! only spare typing: what a file can do is decided by its
//! `general.architecture` when it is loaded, never by its name.

use std::path::Path;

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
}

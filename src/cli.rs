//! The command line as parsed, before anything is resolved (ripgrep's
//! "low args"). Each field's doc comment is its `--help` text.

use std::path::PathBuf;

use ask_ingest::Kind;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod values;
use values::{follow_up_parser, kind_parser, layout_parser, parse_duration, parse_size};

/// Ask questions about your own files, fully offline.
///
/// ask indexes text, Markdown, code, HTML, PDF, mail (mbox, Maildir, .eml),
/// DOCX, ODT and EPUB files into a local index and finds the passages that
/// answer a question. Models run on this
/// machine; nothing is sent anywhere.
#[derive(Debug, Parser)]
#[command(name = "ask", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Index to use: a directory under $ASK_HOME/indexes [default: default]
    #[arg(long, global = true, env = "ASK_INDEX", value_name = "NAME")]
    pub index: Option<String>,

    /// Encoder model directory (config.json, tokenizer.json, and
    /// model.safetensors or model.onnx), a GGUF encoder file (nomic-bert),
    /// or the name of one in $ASK_HOME/models [default: the one an existing index was built with,
    /// else all-MiniLM-L6-v2-int8 (ONNX), else all-MiniLM-L6-v2]
    #[arg(long, global = true, env = "ASK_EMBED_MODEL", value_name = "DIR")]
    pub embed_model: Option<PathBuf>,

    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add files and folders to the index, or bring it up to date
    ///
    /// Re-running is incremental: unchanged files are skipped without being
    /// read, changed files are re-embedded, deleted files are removed. The
    /// index records the files and folders it was given, each with how it
    /// was walked (--hidden, -L, --no-ignore, --max-file-size): with no
    /// PATH, `ask index` brings every one of them up to date (`ask status`
    /// lists them).
    Index(IndexArgs),
    /// Keep the index up to date as files change, until stopped
    ///
    /// Watches PATH..., or with no PATH the files and folders the index
    /// records (those `ask index` was given). Brings the index up to date
    /// first (as `ask index`), then applies
    /// every burst of changes as one batch: new and changed files are
    /// indexed, deleted ones removed, moved ones keep their embeddings.
    /// The index is locked only while a batch is written. Ctrl-C or SIGTERM
    /// finish the batch in hand and exit 0.
    Watch(WatchArgs),
    /// Remove files or folders from the index, leaving the files alone
    ///
    /// Their passages leave the index at once. A folder the index records
    /// (one `ask index` was given) is no longer recorded; a file or folder
    /// inside one is passed over by later runs of `ask index` with no PATH
    /// and by `ask watch`, until `ask index` names it again. To delete a
    /// whole index, delete its folder (`ask status` shows where).
    Forget(ForgetArgs),
    /// Find the passages most relevant to a query
    Search(SearchArgs),
    /// Answer a question from the indexed files, citing them
    ///
    /// Retrieves the best passages, asks the local model to answer only from
    /// them, streams the answer and lists the sources.
    Query(QueryArgs),
    /// Talk with your documents: questions and follow-ups, models kept loaded
    ///
    /// Each answer streams with its numbered sources, as `ask query`'s do,
    /// and a follow-up ("and which port does it use?") is read with the
    /// conversation so far. The encoder and the answer model load once.
    /// Ctrl-C stops the answer being written and keeps the session; Ctrl-D
    /// ends it. /help lists the commands (/sources, /new). When standard
    /// input is not a terminal, each line is a question and the answers go
    /// to standard output. The conversation is kept as `ask query`'s are.
    Chat(ChatArgs),
    /// List, show or delete the conversations of `ask query` and `ask chat`
    ///
    /// Every question `ask query` answers is kept with its answer, as a
    /// conversation a follow-up can continue (`ask query -c`). Each is a
    /// file of its own in $ASK_HOME/conversations, readable by you alone.
    /// With no subcommand, lists them, the most recent first.
    Conversations(ConversationsArgs),
    /// Summarize a file or standard input with the local model
    ///
    /// Text longer than the model's context is summarized in pieces, and the
    /// pieces' summaries are combined (map-reduce). Mail of a few messages is
    /// summarized message by message, each line headed by its sender and
    /// date. Examples: `ask summarize report.pdf`, `git log -50 | ask
    /// summarize -`, `ask summarize inbox.mbox --since 7d --from alice`.
    Summarize(SummarizeArgs),
    /// Show what an index holds and which models built it
    ///
    /// With --check, also proves that the index is whole: every chunk
    /// belongs to a recorded file and every recorded file has exactly its
    /// chunks (exit 4 if not; the next `ask index` repairs it), and says
    /// which indexed files changed or were removed on disk since.
    Status(StatusArgs),
    /// List the models ask can use: its own and those of other tools
    ///
    /// Looks in ask's models directory and, in place (nothing is copied),
    /// in Ollama's store, the Hugging Face hub cache, LM Studio's models
    /// folder and llama.cpp's cache. Each answer model's NAME is what
    /// `--model` accepts; encoders are used with `--embed-model PATH`.
    Models(ModelsArgs),
    /// Serve search and answers to an agent over MCP (stdio)
    ///
    /// Speaks the Model Context Protocol (JSON-RPC 2.0, one message per
    /// line on standard input and output) and offers the tools `search`,
    /// `query` and `status`. The encoder and the answer model are loaded on
    /// first use and kept. Configure an MCP client to run `ask mcp`.
    Mcp(McpArgs),
    /// Serve search, answers and embeddings over a local OpenAI-compatible HTTP API
    ///
    /// `POST /v1/chat/completions` (streamed or whole) answers from an
    /// index with the model `ask` (the configured index) or `ask/INDEX`,
    /// citing its sources as [n] and listing them in the reply's `sources`
    /// field; any answer model `ask models` lists chats without retrieval.
    /// Also `POST /v1/embeddings`, `GET /v1/models` and `POST /v1/search`
    /// (the objects of `ask search --json`). The models are loaded on first
    /// use and kept; requests wait their turn for the answer model. Listens
    /// on the loopback interface only, unless --allow-remote.
    Serve(ServeArgs),
    /// Measure retrieval or answer quality on a judged set
    ///
    /// Indexes the documents into a scratch index (kept under the cache
    /// directory and reused while the documents, encoder and chunk size are
    /// the same). On a BEIR dataset (corpus.jsonl, queries.jsonl,
    /// qrels/test.tsv), runs every judged query and reports nDCG@10,
    /// recall@10, MRR@10 and the median query latency. On a folder with
    /// questions.jsonl, answers every question as `ask query` would and
    /// reports accuracy, citations and times (docs/eval.md).
    Eval(EvalArgs),
    /// Print the completion script of a shell
    ///
    /// For example `ask completions bash >
    /// ~/.local/share/bash-completion/completions/ask`; scripts/setup
    /// installs them for bash, zsh and fish.
    Completions(CompletionsArgs),
    /// Write the manual pages (roff): ask.1 and one per subcommand
    ///
    /// Without --dir, prints ask.1 to standard output. scripts/setup
    /// installs them into ~/.local/share/man/man1.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page (ask.1, ask-index.1, ...) into this folder
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How passages are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchMode {
    /// Nearest vectors (meaning)
    Dense,
    /// BM25 full-text ranking (exact words)
    Bm25,
    /// Both, fused by reciprocal rank fusion
    Hybrid,
}

impl From<SearchMode> for ask_store::Mode {
    fn from(m: SearchMode) -> Self {
        match m {
            SearchMode::Dense => ask_store::Mode::Dense,
            SearchMode::Bm25 => ask_store::Mode::Bm25,
            SearchMode::Hybrid => ask_store::Mode::Hybrid,
        }
    }
}

/// `ask eval --mode`: a ranking, or all three side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalMode {
    /// Nearest vectors (meaning)
    Dense,
    /// BM25 full-text ranking (exact words)
    Bm25,
    /// Both, fused
    Hybrid,
    /// Each of the three, one report each, over one indexing of the corpus
    All,
}

impl EvalMode {
    /// The rankings to evaluate, in the order reported.
    pub fn modes(self) -> Vec<ask_store::Mode> {
        use ask_store::Mode;
        match self {
            EvalMode::Dense => vec![Mode::Dense],
            EvalMode::Bm25 => vec![Mode::Bm25],
            EvalMode::Hybrid => vec![Mode::Hybrid],
            EvalMode::All => vec![Mode::Dense, Mode::Bm25, Mode::Hybrid],
        }
    }
}

/// Which indexed passages a search may return. Applied inside the search,
/// so `-k 10` returns 10 passages whenever 10 match.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only files whose path matches GLOB (`*` also matches `/`; a glob
    /// without `/` matches the file name, a relative one is taken from the
    /// current directory)
    #[arg(long = "path", value_name = "GLOB")]
    pub path: Option<String>,

    /// Only these kinds of document (comma-separated or repeated)
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',', value_parser = kind_parser())]
    pub types: Vec<Kind>,

    #[command(flatten)]
    pub when: WhenWhoArgs,
}

/// When a document was written and, for mail, by whom: the filters that
/// `ask summarize` also applies to the messages of a mailbox.
#[derive(Debug, Clone, Default, Args)]
pub struct WhenWhoArgs {
    /// Only files modified (mail: sent) at or after DATE: 2026-11-01,
    /// 2026-11-01T09:30:00Z, or an age such as 12h, 7d, 2w
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    /// Only files modified (mail: sent) before DATE; a plain date includes that whole day
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,

    /// Only mail whose sender (name or address) contains TEXT, ignoring case
    #[arg(long, value_name = "TEXT")]
    pub from: Option<String>,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Files and folders to index [default: those the index records]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Read paths to index from standard input, one per line
    #[arg(long)]
    pub stdin: bool,

    #[command(flatten)]
    pub what: IndexingArgs,

    /// Exit with code 3 when any file failed
    #[arg(long)]
    pub strict: bool,

    /// Delete what the index holds and build it anew from PATH... only
    ///
    /// For an index whose files were damaged, or to change its encoder or
    /// chunk size. The index is locked meanwhile, as for any run.
    #[arg(long)]
    pub rebuild: bool,

    /// Wait for another run on the same index to finish instead of exiting with code 75
    #[arg(long)]
    pub wait: bool,

    /// Print the summary as one JSON object on standard output
    #[arg(long)]
    pub json: bool,

    /// Print the summary line and skipped files even when not on a terminal,
    /// and there a line as each phase begins (reading, loading the encoder,
    /// optimizing), for logs
    #[arg(short, long)]
    pub verbose: bool,
}

/// What `ask index` and `ask watch` include, and how they cut it.
#[derive(Debug, Clone, Args)]
pub struct IndexingArgs {
    /// Include hidden files and folders (Maildir++ folders such as .Sent always are)
    #[arg(long)]
    pub hidden: bool,

    /// Follow symbolic links (loops are detected and reported)
    #[arg(short = 'L', long)]
    pub follow: bool,

    /// Do not honour .gitignore, .ignore and git exclude files
    #[arg(long)]
    pub no_ignore: bool,

    /// Skip files larger than this (bytes, or with K, M, G: 500K, 50M); in an mbox, messages larger than this
    #[arg(long, value_name = "SIZE", default_value = "50M", value_parser = parse_size)]
    pub max_file_size: u64,

    /// Chunk size in tokens of the encoder's tokenizer
    #[arg(long, value_name = "N", default_value_t = ask_pipeline::index::CHUNK_TOKENS)]
    pub chunk_tokens: usize,

    /// Tokens shared by consecutive chunks
    #[arg(long, value_name = "N", default_value_t = ask_pipeline::index::CHUNK_OVERLAP)]
    pub chunk_overlap: usize,

    /// Chunks embedded and committed together (tests use small values)
    #[arg(long, value_name = "N", default_value_t = ask_pipeline::index::COMMIT_EVERY, hide = true)]
    pub commit_every: usize,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Folders (or files) to watch [default: those the index records]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    #[command(flatten)]
    pub what: IndexingArgs,

    /// Print one JSON object per applied batch of changes
    #[arg(long)]
    pub json: bool,

    /// Wait this long after the last change before applying a batch
    /// (500ms, 2s; a bare number is seconds)
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    pub settle: std::time::Duration,

    /// The same in milliseconds (before --settle took units)
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "settle")]
    pub settle_ms: Option<u64>,

    /// Free the encoder's memory after this long without a change (30s,
    /// 5m, 1h; a bare number is seconds; 0: keep it); the next change
    /// loads it again
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub unload_after: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for (several words are joined with spaces)
    #[arg(value_name = "QUERY", required = true)]
    pub query: Vec<String>,

    /// How many passages to show
    #[arg(short = 'k', long = "passages", alias = "limit", value_name = "N", default_value_t = 10)]
    pub limit: usize,

    /// Ranking: meaning (dense), exact words (bm25) or both fused (hybrid)
    #[arg(long, value_enum, default_value_t = SearchMode::Hybrid)]
    pub mode: SearchMode,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Print one JSON object per line
    #[arg(long)]
    pub json: bool,
}

/// Which passages an answer is written from, and how much of them (query,
/// chat, eval).
#[derive(Debug, Args)]
pub struct PassageArgs {
    /// Passages to retrieve and give the model
    #[arg(short = 'k', long = "passages", alias = "limit", value_name = "N", default_value_t = 5)]
    pub limit: usize,

    /// Passages whose cosine similarity to the question is below this are not used
    #[arg(long, value_name = "SCORE", default_value_t = ask_pipeline::answer::MIN_SCORE)]
    pub min_score: f32,

    /// Chunks on each side of each retrieved one to give the model with it,
    /// as one passage (0: the retrieved chunks alone)
    #[arg(long, value_name = "N", default_value_t = ask_pipeline::answer::NEIGHBOURS)]
    pub neighbours: u32,

    /// Give the model only the passages' sentences that bear most on the question, about N tokens in all (0: whole passages)
    #[arg(long, value_name = "N", default_value_t = ask_pipeline::prompt::PASSAGE_TOKENS)]
    pub passage_tokens: usize,
}

impl PassageArgs {
    /// How these options answer, ranked by `mode`, a follow-up searched
    /// for as `follow_up` says (the prompt's layout the default).
    pub fn answering(&self, mode: ask_store::Mode, follow_up: ask_pipeline::conversation::FollowUp) -> ask_pipeline::answer::Answering {
        ask_pipeline::answer::Answering {
            k: self.limit,
            mode,
            min_score: self.min_score,
            neighbours: self.neighbours,
            passage_tokens: self.passage_tokens,
            follow_up,
            ..Default::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The question (read from standard input when absent)
    #[arg(value_name = "QUESTION")]
    pub question: Vec<String>,

    /// Ranking: meaning (dense), exact words (bm25) or both fused (hybrid)
    #[arg(long, value_enum, default_value_t = SearchMode::Hybrid)]
    pub mode: SearchMode,

    #[command(flatten)]
    pub passages: PassageArgs,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Print the assembled prompt context and stop (no model is loaded)
    #[arg(long)]
    pub context_only: bool,

    /// Print one JSON object: answer, attributed, sources, model, stop,
    /// timings, conversation (docs/json.md)
    #[arg(long)]
    pub json: bool,

    #[command(flatten, next_help_heading = "Conversation")]
    pub talk: ConversationArgs,

    #[command(flatten, next_help_heading = "Answer model and sampling")]
    pub gen: GenArgs,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Ranking: meaning (dense), exact words (bm25) or both fused (hybrid)
    #[arg(long, value_enum, default_value_t = SearchMode::Hybrid)]
    pub mode: SearchMode,

    #[command(flatten)]
    pub passages: PassageArgs,

    #[command(flatten, next_help_heading = "Conversation")]
    pub talk: ConversationArgs,

    #[command(flatten, next_help_heading = "Answer model and sampling")]
    pub gen: GenArgs,
}

/// Which conversation a question continues, and how a follow-up is searched
/// (query, chat).
#[derive(Debug, Args)]
pub struct ConversationArgs {
    /// Continue the most recent conversation with this index: each question
    /// is a follow-up to its earlier turns
    #[arg(short = 'c', long = "continue")]
    pub continue_last: bool,

    /// Continue the conversation ID (`ask conversations` lists them)
    #[arg(long, value_name = "ID", conflicts_with = "continue_last")]
    pub conversation: Option<String>,

    #[command(flatten)]
    pub follow: FollowUpArgs,
}

/// How a follow-up question is searched (query, chat, eval).
#[derive(Debug, Args)]
pub struct FollowUpArgs {
    /// How a follow-up is searched: join (with the earlier questions) or
    /// rewrite (by the answer model, into a question that stands alone)
    #[arg(long, value_name = "METHOD", default_value_t = ask_pipeline::conversation::FollowUp::default(), hide = true,
          value_parser = follow_up_parser())]
    pub follow_up: ask_pipeline::conversation::FollowUp,
}

/// How the answer model is chosen and samples its text (query, summarize).
#[derive(Debug, Args)]
pub struct GenArgs {
    /// GGUF model: a path, or a name in $ASK_HOME/models: qwen2.5-coder-1.5b
    /// (the default), smollm2 (135M: fast, weak answers), gemma3-270m, a file
    /// name there; or a model of another tool, as `ask models` lists them:
    /// Ollama's `qwen2.5:1.5b`, a Hugging Face repository `Org/Name[:QUANT]`,
    /// a GGUF file name in LM Studio's or llama.cpp's folders
    #[arg(short, long, env = "ASK_MODEL", value_name = "MODEL")]
    pub model: Option<PathBuf>,

    /// Sampling temperature; 0 picks the most likely token every time
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f64,

    /// Nucleus sampling: keep the smallest set of tokens with this total probability
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,

    /// Keep only the K most likely tokens
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,

    /// Random seed for sampling
    #[arg(long, value_name = "N", default_value_t = ask_engine::generate::SEED)]
    pub seed: u64,

    /// Most tokens to generate
    #[arg(long, value_name = "N", default_value_t = ask_pipeline::answer::ANSWER_TOKENS)]
    pub max_tokens: usize,

    /// Penalty for repeating recent tokens (1 = none)
    #[arg(long, value_name = "X", default_value_t = 1.1)]
    pub repeat_penalty: f32,

    /// Keep generating past the model's end-of-turn token, up to --max-tokens (for benchmarks)
    #[arg(long, hide = true)]
    pub ignore_eos: bool,

    /// Prompt-lookup decoding: draft up to N tokens copied from the prompt
    /// (the text is the same; 0: off, auto: where this CPU gains)
    ///
    /// The drafts are checked in one pass, for greedy decoding only. `auto`
    /// drafts 3 where this CPU's kernels check them cheaply (AVX-512 VNNI,
    /// K-quant models), else none.
    #[arg(long, value_name = "N|auto", default_value_t = ask_engine::generate::Lookup::Auto)]
    pub lookup: ask_engine::generate::Lookup,
}

impl GenArgs {
    /// The sampling settings these options describe.
    pub fn sampling(&self) -> ask_engine::SamplingParams {
        ask_engine::SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed,
            max_tokens: self.max_tokens,
            repeat_penalty: self.repeat_penalty,
            ignore_eos: self.ignore_eos,
            lookup: self.lookup,
            ..Default::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// File to summarize (any format ask indexes), or - for standard input
    #[arg(value_name = "FILE")]
    pub input: PathBuf,

    /// Print one JSON object: summary, input, pieces, messages, digest,
    /// message, model, timings (docs/json.md)
    #[arg(long)]
    pub json: bool,

    /// For mail: which messages to summarize
    #[command(flatten, next_help_heading = "Choosing mail messages")]
    pub when: WhenWhoArgs,

    #[command(flatten, next_help_heading = "Answer model and sampling")]
    pub gen: GenArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A BEIR-format dataset (corpus.jsonl, queries.jsonl, qrels/test.tsv) to
    /// measure retrieval, or a folder with questions.jsonl (or
    /// conversations.jsonl: follow-ups) to measure answers
    #[arg(value_name = "DATASET_DIR")]
    pub dataset: PathBuf,

    /// The documents the questions are about: a BEIR dataset or a folder of
    /// files [default: DATASET_DIR if it has corpus.jsonl, else the folder
    /// beside it named without "-qa"]
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,

    /// Ranking to evaluate (all: the three side by side; retrieval only)
    #[arg(long, value_enum, default_value_t = EvalMode::Hybrid)]
    pub mode: EvalMode,

    #[command(flatten)]
    pub passages: PassageArgs,

    /// Answers: how the prompt lays out the passages and the question (plain: the
    /// passages best first, then the question, as `ask query`; restate: the question
    /// before the passages too; best-last: the passages from the lowest ranked to the
    /// best; quote: the answering sentence quoted first)
    #[arg(long, value_name = "LAYOUT", default_value_t = ask_pipeline::prompt::Layout::default(),
          value_parser = layout_parser())]
    pub layout: ask_pipeline::prompt::Layout,

    /// Answers: evaluate only the first N questions (or conversations)
    #[arg(long, value_name = "N")]
    pub max_questions: Option<usize>,

    #[command(flatten)]
    pub follow: FollowUpArgs,

    /// Index the documents in chunks of N tokens (as `ask index --chunk-tokens`),
    /// into a scratch index of their own
    #[arg(long, value_name = "N", default_value_t = ask_pipeline::index::CHUNK_TOKENS)]
    pub chunk_tokens: usize,

    /// Print one JSON object (retrieval: ndcg@10, recall@10, mrr@10, queries,
    /// median_ms, one object per line with --mode all; answers: the scores
    /// and every question's outcome)
    #[arg(long)]
    pub json: bool,

    #[command(flatten, next_help_heading = "Answer model and sampling")]
    pub gen: GenArgs,
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// GGUF model for the `query` tool (see `ask models`)
    #[arg(short, long, env = "ASK_MODEL", value_name = "MODEL")]
    pub model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port, printed at start)
    #[arg(long, env = "ASK_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:8765")]
    pub listen: std::net::SocketAddr,

    /// Allow an address other machines can reach: whoever reaches it can
    /// read your indexed files through it
    #[arg(long)]
    pub allow_remote: bool,

    /// GGUF model for the answers of the models `ask` and `ask/INDEX` (see `ask models`)
    #[arg(short, long, env = "ASK_MODEL", value_name = "MODEL")]
    pub model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Print one JSON object per model
    #[arg(long)]
    pub json: bool,

    /// Also list the files passed over, and why
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Files and folders to remove from the index
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Wait for another run on the same index to finish instead of exiting with code 75
    #[arg(long)]
    pub wait: bool,

    /// Print what was removed as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConversationsArgs {
    #[command(subcommand)]
    pub action: Option<ConversationsAction>,

    /// Print one JSON object per conversation (all its turns)
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConversationsAction {
    /// Every conversation, the most recent first (the default)
    List,
    /// One conversation's questions and answers
    Show {
        /// The conversation, as the list names it
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Delete conversations
    Delete {
        /// The conversations, as the list names them
        #[arg(value_name = "ID", required_unless_present = "all")]
        ids: Vec<String>,
        /// Delete every conversation
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object (with --all, one per index)
    #[arg(long)]
    pub json: bool,

    /// List every index: name, files, chunks, size, encoder, last indexed
    #[arg(long, conflicts_with = "check")]
    pub all: bool,

    /// Check that chunks and file records agree, and compare the records
    /// with the files on disk (exit 4 if the index is not whole)
    #[arg(long)]
    pub check: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}

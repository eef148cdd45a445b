//! The update's reuse, slicing and crash-safety logic, with a fake encoder
//! on a real store in a temporary directory.

use std::path::{Path, PathBuf};

use ask_embed::{EncoderInfo, Pooling};
use ask_engine::ModelError;
use ask_store::{FileStatus, Store, WhenBusy};
use tokenizers::Tokenizer;
use tokio::runtime::Runtime;

use super::*;

const DIM: usize = 4;

/// Every whitespace-separated word is one token.
fn word_tokenizer() -> Tokenizer {
    include_str!("../../../../fixtures/tokenizers/words.json")
        .parse()
        .unwrap()
}

/// An encoder that records what it is asked to embed, and can be made to
/// fail on its n-th call (a run killed mid-way).
struct Fake {
    info: EncoderInfo,
    loads: usize,
    calls: usize,
    texts: Vec<String>,
    fail_on_call: Option<usize>,
}

fn fake() -> Fake {
    fake_named("fake")
}

fn fake_named(name: &str) -> Fake {
    let info = EncoderInfo {
        name: name.into(),
        backend: ask_embed::Backend::Candle,
        dim: DIM,
        max_tokens: 512,
        pooling: Pooling::Mean,
        query_prefix: String::new(),
        passage_prefix: String::new(),
    };
    Fake { info, loads: 0, calls: 0, texts: Vec::new(), fail_on_call: None }
}

impl Encoder for Fake {
    fn info(&self) -> &EncoderInfo {
        &self.info
    }

    fn tokenizer(&self) -> Result<Tokenizer, ModelError> {
        Ok(word_tokenizer())
    }

    fn load(&mut self) -> Result<(), ModelError> {
        self.loads += 1;
        Ok(())
    }

    fn embed_passages(&mut self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize), ModelError> {
        self.calls += 1;
        if self.fail_on_call == Some(self.calls) {
            return Err(ModelError::Tokenizer("killed".into()));
        }
        self.texts.extend(texts.iter().map(|t| t.to_string()));
        let vectors = texts.iter().map(|t| vec![0.5, 0.5, 0.5, (t.len() % 7) as f32 / 10.0]).collect();
        Ok((vectors, texts.iter().map(|t| t.split_whitespace().count()).sum()))
    }
}

struct Env {
    rt: Runtime,
    tmp: tempfile::TempDir,
    options: Options,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("docs")).unwrap();
        Env { rt: Runtime::new().unwrap(), tmp, options: Options::default() }
    }

    fn index_dir(&self) -> PathBuf {
        self.tmp.path().join("index")
    }

    fn docs(&self) -> PathBuf {
        self.tmp.path().join("docs")
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.docs().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn update(&self, encoder: &mut Fake) -> Result<Summary, IndexError> {
        let info = encoder.info.clone();
        let mut writer = Writer::open(&self.index_dir(), &info, self.options.clone(), WhenBusy::Fail)?;
        writer.update(&roots(&[self.docs()]).unwrap(), encoder, &mut ())
    }

    fn store(&self) -> Store {
        self.rt.block_on(Store::open(&self.index_dir())).unwrap()
    }

    fn file_status(&self, path: &Path) -> Option<FileStatus> {
        let key = PathKey::of(&roots(&[path.to_path_buf()]).unwrap()[0]);
        self.rt.block_on(self.store().file_records()).unwrap().get(&key).map(|r| r.status)
    }
}

/// An mbox of messages numbered `from..to`, each short enough to be one chunk.
fn mbox(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| {
            format!(
                "From s{i}@example.org Mon Mar  4 10:00:00 2024\nFrom: Sender {i} <s{i}@example.org>\n\
                 Subject: Note {i}\nMessage-ID: <m{i}@example.org>\nDate: Mon, 4 Mar 2024 10:00:00 +0000\n\n\
                 Note number {i} mentions crane {i}.\n\n"
            )
        })
        .collect()
}

#[test]
fn an_unchanged_tree_costs_a_walk_and_never_loads_the_encoder() {
    let env = Env::new();
    env.write("a.md", "# Alpha\n\nThe harbour crane lifts containers.");
    env.write("b.txt", "Beta notes about tides.");
    env.write("sub/c.txt", "Gamma notes about ships.");
    let mut first = fake();
    let s = env.update(&mut first).unwrap();
    assert_eq!((s.new, s.changed, s.unchanged, s.failed), (3, 0, 0, 0));
    assert_eq!(s.chunks, first.texts.len());
    assert_eq!(first.loads, 1);

    let mut second = fake();
    let s = env.update(&mut second).unwrap();
    assert_eq!((s.new, s.changed, s.unchanged, s.chunks), (0, 0, 3, 0));
    assert_eq!((second.loads, second.calls), (0, 0), "nothing to embed: the encoder is never loaded");
}

#[test]
fn a_moved_file_keeps_its_embeddings() {
    let env = Env::new();
    env.write("old/report.txt", "The quarterly report covers the harbour crane budget.");
    env.update(&mut fake()).unwrap();
    std::fs::rename(env.docs().join("old"), env.docs().join("new")).unwrap();
    let mut enc = fake();
    let s = env.update(&mut enc).unwrap();
    assert_eq!((s.new, s.removed, s.chunks), (1, 1, 0));
    assert_eq!(s.reused, 1);
    assert!(enc.texts.is_empty(), "{:?}", enc.texts);
    assert_eq!(env.file_status(&env.docs().join("new/report.txt")), Some(FileStatus::Ok));
}

#[test]
fn a_grown_mailbox_embeds_only_its_new_messages() {
    let env = Env::new();
    env.write("inbox.mbox", &mbox(0..3));
    let mut first = fake();
    let s = env.update(&mut first).unwrap();
    assert_eq!((s.new, s.chunks), (1, 3));
    env.write("inbox.mbox", &mbox(0..4));
    let mut second = fake();
    let s = env.update(&mut second).unwrap();
    assert_eq!((s.changed, s.reused, s.chunks), (1, 3, 1));
    assert_eq!(second.texts.len(), 1);
    assert!(second.texts[0].contains("crane 3"), "{:?}", second.texts);
}

#[test]
fn a_run_killed_between_slices_keeps_the_slices_it_committed() {
    let mut env = Env::new();
    env.options.commit_every = 2;
    env.write("archive.mbox", &mbox(0..6));
    // Slices of two messages each: the third embedding never returns.
    let mut killed = fake();
    killed.fail_on_call = Some(3);
    assert!(env.update(&mut killed).is_err());
    assert_eq!(env.file_status(&env.docs().join("archive.mbox")), None, "the file's row is written last");

    let mut rerun = fake();
    let s = env.update(&mut rerun).unwrap();
    assert_eq!((s.new, s.reused, s.chunks), (1, 4, 2));
    assert!(rerun.texts.iter().all(|t| t.contains("crane 4") || t.contains("crane 5")), "{:?}", rerun.texts);
    let counts = env.rt.block_on(env.store().counts()).unwrap();
    assert_eq!(counts.chunks, 6, "no chunk is stored twice");
}

#[test]
fn files_gone_from_below_a_root_are_removed() {
    let env = Env::new();
    env.write("keep.txt", "Kept.");
    env.write("gone.txt", "Gone soon.");
    env.update(&mut fake()).unwrap();
    std::fs::remove_file(env.docs().join("gone.txt")).unwrap();
    let s = env.update(&mut fake()).unwrap();
    assert_eq!((s.removed, s.unchanged), (1, 1));
    assert_eq!(env.file_status(&env.docs().join("gone.txt")), None);
}

#[test]
fn binary_files_are_recorded_as_skipped_and_counted_once() {
    let env = Env::new();
    env.write("notes.txt", "Plain notes.");
    std::fs::write(env.docs().join("blob.bin"), [0u8, 159, 146, 150, 0, 1, 2, 3]).unwrap();
    let s = env.update(&mut fake()).unwrap();
    assert_eq!((s.new, s.skipped), (1, 1));
    assert_eq!(env.file_status(&env.docs().join("blob.bin")), Some(FileStatus::Skipped));
}

#[test]
fn excluded_folders_are_never_indexed() {
    let mut env = Env::new();
    env.write("notes.txt", "Notes.");
    env.write("own/index-data.txt", "ask's own files.");
    env.options.exclude = vec![env.docs().join("own")];
    let s = env.update(&mut fake()).unwrap();
    assert_eq!(s.new, 1);
    assert_eq!(env.file_status(&env.docs().join("own/index-data.txt")), None);
}

#[test]
fn another_encoder_and_a_second_writer_are_refused() {
    let env = Env::new();
    env.write("a.txt", "Alpha.");
    env.update(&mut fake()).unwrap();
    let err = env.update(&mut fake_named("other")).unwrap_err();
    assert!(matches!(err, IndexError::EncoderMismatch { .. }), "{err}");

    let info = fake().info;
    let _held = Writer::open(&env.index_dir(), &info, Options::default(), WhenBusy::Fail).unwrap();
    let err = env.update(&mut fake()).err().unwrap();
    assert!(matches!(err, IndexError::Lock(ask_store::LockError::Busy { .. })), "{err}");
}

#[test]
fn overlap_must_be_smaller_than_the_chunk_held_to_the_encoder() {
    let mut env = Env::new();
    // 600 tokens is more than the fake encoder reads (512): held to 510.
    env.options.chunk_tokens = 600;
    env.options.chunk_overlap = 510;
    let err = env.update(&mut fake()).unwrap_err();
    assert!(matches!(err, IndexError::Chunking(ChunkError::Overlap { overlap: 510, size: 510 })), "{err}");
}

#[test]
fn slices_hold_whole_documents_and_at_least_one() {
    // Documents ending at 3, 5, 9, 20, 21 chunks, slices of at most 5.
    assert_eq!(slices(&[3, 5, 9, 20, 21], 5), vec![5, 9, 20, 21]);
    assert_eq!(slices(&[1, 2, 3, 4, 5, 6], 2), vec![2, 4, 6]);
    assert_eq!(slices(&[7], 2), vec![7], "a document larger than a slice is one slice");
    assert_eq!(slices(&[], 2), Vec::<usize>::new());
}

#[test]
fn a_file_grown_past_the_limit_since_the_walk_is_read_no_further_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.txt");
    std::fs::write(&path, "word ".repeat(20_000)).unwrap();
    // (The first 16 KiB, which tell a mailbox, are read whatever the limit.)
    let Content::Whole(read) = Content::read(&path, 20_000).unwrap() else { panic!("not a mailbox") };
    assert_eq!(read.len(), 20_001, "one byte past the limit tells it is over");
    let Content::Whole(all) = Content::read(&path, 1_000_000).unwrap() else { panic!("not a mailbox") };
    assert_eq!(all.len(), 100_000);
    // prepare() then records it as skipped by size, from a stale walk.
    let c = ask_ingest::discover::candidate(&path, &std::fs::metadata(&path).unwrap());
    let chunker = Chunker::new(word_tokenizer(), 64, 8).unwrap();
    match prepare(Candidate { size: 10, ..c }, &HashMap::new(), &chunker, 20_000, &|_| HashSet::new()) {
        Prepared::NoChunks { record } => assert_eq!(record.status, FileStatus::Skipped),
        _ => panic!("a file over the limit is skipped"),
    }
}

#[test]
fn recorded_roots_keep_the_widest_walk_and_forget_what_is_gone() {
    let root = |path: &str, hidden: bool| Root { path: PathKey::of(Path::new(path)), walk: WalkOptions { hidden, ..Default::default() } };
    // A first root is recorded; one inside it walked the same way adds nothing.
    let r = record_roots(&[], &[(root("/n", false), true)]);
    assert_eq!(record_roots(&r, &[(root("/n/sub", false), true)]), [root("/n", false)]);
    // Walked another way, it is kept beside it.
    let r = record_roots(&r, &[(root("/n/sub", true), true)]);
    assert_eq!(r, [root("/n", false), root("/n/sub", true)]);
    // /nb is not inside /n.
    let r = record_roots(&r, &[(root("/nb", false), true)]);
    assert_eq!(r.len(), 3);
    // The same root again takes its new walk; a wider one replaces those inside it.
    assert_eq!(record_roots(&r, &[(root("/n", true), true)]), [root("/n", true), root("/nb", false)]);
    assert_eq!(record_roots(&r, &[(root("/", false), true)]), [root("/", false)]);
    // A root that is gone is forgotten with those inside it.
    assert_eq!(record_roots(&r, &[(root("/n", false), false)]), [root("/nb", false)]);
}

#[test]
fn forgotten_paths_leave_the_index_and_stay_out_until_named_again() {
    let env = Env::new();
    env.write("a.md", "# Alpha\n\nThe harbour crane lifts containers.");
    env.write("private/b.txt", "Beta notes about tides.");
    env.write("private/deep/c.txt", "Gamma notes about ships.");
    env.update(&mut fake()).unwrap();
    let files = |env: &Env| {
        let mut keys: Vec<PathKey> = env.rt.block_on(env.store().file_records()).unwrap().into_keys().collect();
        keys.sort();
        keys.iter().map(|k| k.to_path().strip_prefix(roots(&[env.docs()]).unwrap()[0].as_path()).unwrap().display().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(files(&env), ["a.md", "private/b.txt", "private/deep/c.txt"]);
    // What `ask index` with no path does: the recorded roots, walked again.
    let recorded = |env: &Env| {
        let mut enc = fake();
        let info = enc.info.clone();
        let mut writer = Writer::open(&env.index_dir(), &info, env.options.clone(), WhenBusy::Fail).unwrap();
        let roots = IndexMeta::load(&env.index_dir()).unwrap().unwrap().roots;
        writer.update_roots(&roots, &mut enc, &mut ()).unwrap()
    };

    // A path nothing is indexed under is an error, and changes nothing.
    let stranger = env.tmp.path().join("elsewhere");
    let err = forget(&env.index_dir(), &[env.docs().join("private"), stranger.clone()], WhenBusy::Fail).unwrap_err();
    assert!(matches!(&err, IndexError::NotIndexed(p) if *p == stranger), "{err}");
    assert_eq!(files(&env).len(), 3);
    // Inside the root, a path that does not exist is most likely a typo.
    let typo = env.docs().join("privat");
    assert!(matches!(forget(&env.index_dir(), std::slice::from_ref(&typo), WhenBusy::Fail), Err(IndexError::NotIndexed(_))));

    // A folder inside the root: its files go, and the root's walk passes over it.
    let private = env.docs().join("private");
    let done = forget(&env.index_dir(), std::slice::from_ref(&private), WhenBusy::Fail).unwrap();
    assert_eq!((done.files, done.chunks), (2, 2));
    assert!(done.roots.is_empty());
    assert_eq!(done.passed_over.len(), 1);
    assert_eq!(files(&env), ["a.md"]);
    let s = recorded(&env);
    assert_eq!((s.new, s.removed, s.unchanged), (0, 0, 1), "{s:?}");
    assert_eq!(files(&env), ["a.md"]);
    // Forgetting it again is no error, and does nothing.
    let again = forget(&env.index_dir(), std::slice::from_ref(&private), WhenBusy::Fail).unwrap();
    assert_eq!((again.files, again.passed_over.len()), (0, 0));

    // Naming the folder again (here, the root that holds it) brings it back.
    let s = env.update(&mut fake()).unwrap();
    assert_eq!(s.new, 2, "{s:?}");
    assert!(IndexMeta::load(&env.index_dir()).unwrap().unwrap().forgotten.is_empty());

    // The root itself: every file goes, and the root is no longer recorded.
    let done = forget(&env.index_dir(), &[env.docs()], WhenBusy::Fail).unwrap();
    assert_eq!((done.files, done.roots.len(), done.passed_over.len()), (3, 1, 0));
    let meta = IndexMeta::load(&env.index_dir()).unwrap().unwrap();
    assert!(meta.roots.is_empty() && meta.forgotten.is_empty(), "{meta:?}");
    assert!(files(&env).is_empty());
    // The files themselves are untouched.
    assert!(env.docs().join("private/deep/c.txt").is_file());
}

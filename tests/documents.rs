//! DOCX, ODT and EPUB written by LibreOffice (issue 5): text in reading
//! order with headings, and damaged archives reported without stopping a run.

use crate::util::*;

fn copy_office(env: &Env) {
    copy_dir(&fixtures().join("office"), &env.path("office"));
}

#[test]
fn office_documents_and_ebooks_are_searchable() {
    let env = Env::new();
    copy_office(&env);
    let summary = env.index(&["office"]);
    assert_eq!((summary["new"].as_u64(), summary["failed"].as_u64()), (Some(3), Some(0)), "{summary}");

    // The same handbook in three formats: each copy is found.
    let hits = env.search("how long is the compressor guaranteed", 3);
    let mut names: Vec<String> = hits.iter().map(file_name).collect();
    names.sort();
    assert_eq!(names, ["boiler-manual.docx", "boiler-manual.epub", "boiler-manual.odt"], "{hits:?}");
    for hit in &hits {
        let text = hit["text"].as_str().unwrap();
        assert!(text.contains("Kältetechnik Brandt"), "{hit}");
    }
    // Headings are kept, as Markdown headings, in the word-processing formats.
    let docx = hits.iter().find(|h| file_name(h) == "boiler-manual.docx").unwrap();
    assert!(docx["text"].as_str().unwrap().contains("## Warranty"), "{docx}");
    assert_eq!(docx["kind"], "docx");

    // Reading order: the filter section comes before the defrost section.
    let out = json_lines(&env.ok(&["search", "rinse the filter mesh", "--json", "-k", "1", "--type", "odt"]).stdout);
    let text = out[0]["text"].as_str().unwrap();
    assert_eq!(file_name(&out[0]), "boiler-manual.odt");
    let (filters, defrost) = (text.find("## Filters").unwrap(), text.find("## Defrosting").unwrap());
    assert!(filters < defrost, "{text}");
}

#[test]
fn a_damaged_docx_is_reported_and_the_run_goes_on() {
    let env = Env::new();
    env.write("docs/truncated.docx", std::fs::read(fixtures().join("bad/truncated.docx")).unwrap());
    env.write("docs/good.txt", "The lighthouse lamp is cleaned every Sunday.");
    let out = env.ok(&["index", "--json", "docs"]);
    let summary = json(&out.stdout);
    assert_eq!((summary["new"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(1)), "{summary}");
    let err = stderr(&out);
    assert!(err.contains("truncated.docx") && err.contains("cannot read DOCX"), "{err}");
    assert_eq!(file_name(&env.search("lighthouse lamp", 1)[0]), "good.txt");
    // --strict turns the failure into exit code 3 for scripts.
    let out = env.run(&["index", "--index", "strict", "--strict", "docs"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

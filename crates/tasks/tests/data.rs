//! Local evaluation data (tests/fixtures/datasets: the first 50 rows of real sets as JSONL and Parquet).

use std::path::{Path, PathBuf};

use mmreason_tasks::data::{read_jsonl, read_parquet};
use mmreason_tasks::{TasksError, load_split};

fn datasets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/datasets")
}

#[test]
fn jsonl_and_parquet_give_the_same_documents() {
    for (task, split) in [
        ("arc_easy", "validation"),
        ("hellaswag", "validation"),
        ("mmlu", "test"),
        ("boolq", "validation"),
        ("strategyqa", "test"),
        ("gsm8k", "test"),
        ("winogrande", "validation"),
        ("commonsense_qa", "validation"),
        ("arc_challenge", "test"),
        ("openbookqa", "test"),
        ("piqa", "validation"),
        ("social_iqa", "validation"),
        ("mmlu", "dev"),
    ] {
        let dir = datasets().join(task);
        let a = read_jsonl(&dir.join(format!("{split}.jsonl"))).unwrap();
        let b = read_parquet(&dir.join(format!("{split}.parquet"))).unwrap();
        assert_eq!(a.len(), 50, "{task}");
        assert_eq!(a, b, "{task}: JSONL and Parquet rows differ");
    }
    let s = load_split(&datasets(), "arc_easy", "validation").unwrap();
    assert!(s.path.ends_with("validation.jsonl"));
    assert!(s.str_field(0, "question").unwrap().starts_with("Which"));
    assert_eq!(
        load_split(&datasets(), "mmlu", "test")
            .unwrap()
            .int_field(0, "answer")
            .unwrap(),
        1
    );
}

#[test]
fn bad_data_names_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let e = load_split(tmp.path(), "race", "test").unwrap_err();
    assert!(
        matches!(&e, TasksError::MissingData { .. }) && e.to_string().contains("race/test.jsonl"),
        "{e}"
    );

    let dir = tmp.path().join("t");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("test.jsonl"), "{\"a\": 1}\n{\"a\": 2\n").unwrap();
    let e = load_split(tmp.path(), "t", "test").unwrap_err();
    assert!(matches!(e, TasksError::BadLine { line: 2, .. }), "{e}");
    std::fs::write(dir.join("test.jsonl"), "[1, 2]\n").unwrap();
    assert!(
        load_split(tmp.path(), "t", "test")
            .unwrap_err()
            .to_string()
            .contains("line 1")
    );
    std::fs::write(dir.join("test.jsonl"), "\n\n").unwrap();
    assert!(matches!(
        load_split(tmp.path(), "t", "test").unwrap_err(),
        TasksError::Empty { .. }
    ));

    std::fs::write(dir.join("test.jsonl"), "{\"q\": 3}\n").unwrap();
    let s = load_split(tmp.path(), "t", "test").unwrap();
    let e = s.str_field(0, "q").unwrap_err().to_string();
    assert!(
        e.contains("row 0") && e.contains("`q`") && e.contains("a number"),
        "{e}"
    );
    assert!(
        s.str_field(0, "missing")
            .unwrap_err()
            .to_string()
            .contains("is missing")
    );

    std::fs::remove_file(dir.join("test.jsonl")).unwrap();
    std::fs::write(dir.join("test.parquet"), b"PAR1 not really").unwrap();
    let e = load_split(tmp.path(), "t", "test").unwrap_err();
    assert!(
        matches!(e, TasksError::Parquet { .. }) && e.to_string().contains("test.parquet"),
        "{e}"
    );
}

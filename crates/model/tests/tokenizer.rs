//! The real Llama-2 and Mistral tokenizers (tests/fixtures/tokenizers) reproduce their reference encodings.

use std::path::{Path, PathBuf};

use mmreason_model::TextTokenizer;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tokenizers")
        .join(name)
}

#[test]
fn reference_cases_encode_and_decode_exactly() {
    for name in ["llama-2", "mistral-7b"] {
        let tok = TextTokenizer::from_dir(&dir(name)).unwrap();
        assert_eq!((tok.bos_id, tok.eos_id), (Some(1), Some(2)), "{name}");
        let cases: Vec<(String, Vec<u32>)> =
            serde_json::from_slice(&std::fs::read(dir(name).join("cases.json")).unwrap()).unwrap();
        assert_eq!(cases.len(), 12);
        for (text, ids) in cases {
            assert_eq!(tok.encode(&text, true).unwrap(), ids, "{name}: {text:?}");
            assert_eq!(tok.decode(&ids, true).unwrap(), text, "{name}: decode {text:?}");
        }
        let no_bos = tok.encode("Hello world", false).unwrap();
        assert_ne!(no_bos[0], 1, "{name}: no BOS without special tokens");
    }
}

#[test]
fn a_missing_tokenizer_is_a_clear_error() {
    let e = TextTokenizer::from_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .err()
        .unwrap();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
}

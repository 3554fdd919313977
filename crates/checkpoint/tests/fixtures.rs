//! Integration tests on the committed transformers fixtures (tests/fixtures, made by scripts/make_fixtures.py).

use std::path::{Path, PathBuf};

use mmreason_checkpoint::{
    CheckpointError, CheckpointWriter, DecoderKind, Dtype, LlavaLayout, ModelConfig, ModelDir,
    SafetensorsFile, Weights, WriterOptions, vlm_to_llm_name,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

#[test]
fn every_fixture_opens_with_the_right_kind() {
    let expect = [
        ("llama", "llama"),
        ("llama-sharded", "llama"),
        ("mistral", "mistral"),
        ("clip-vision", "clip_vision_model"),
        ("vicuna-base", "llama"),
        ("mistral-base", "mistral"),
        ("llava-1.5", "llava"),
        ("llava-next", "llava_next"),
    ];
    for (dir, kind) in expect {
        let m = ModelDir::open(model(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(m.config.kind_name(), kind, "{dir}");
        assert!(!m.weights.is_empty(), "{dir}");
    }
    let m = ModelDir::open(model("mistral")).unwrap();
    let t = m.config.text().unwrap();
    assert_eq!(
        (t.kind, t.num_key_value_heads, t.sliding_window, t.rope_theta),
        (DecoderKind::Mistral, 2, Some(5), 1e6)
    );
    let m = ModelDir::open(model("llava-next")).unwrap();
    let ModelConfig::LlavaNext(c) = &m.config else {
        panic!()
    };
    assert_eq!(c.image_grid_pinpoints[0], [56, 112]);
    assert_eq!(c.text.vocab_size, 32064);
    assert_eq!(c.vision.patches_per_side(), 4);
    assert!(m.tokenizer.tokenizer_json.is_some() && m.tokenizer.preprocessor_config.is_some());
}

#[test]
fn sharded_read_equals_unsharded_read() {
    let one = Weights::open_dir(model("llama")).unwrap();
    let many = Weights::open_dir(model("llama-sharded")).unwrap();
    assert!(many.shards().len() > 1 && many.index_path().is_some());
    assert_eq!(one.len(), many.len());
    assert_eq!(one.total_bytes(), many.total_bytes());
    for t in one.tensors() {
        let u = many.get(t.name()).unwrap();
        assert_eq!(
            (t.dtype(), t.shape(), t.bytes()),
            (u.dtype(), u.shape(), u.bytes()),
            "{}",
            t.name()
        );
    }
    // The index's own total_size agrees with what we read.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(many.index_path().unwrap()).unwrap()).unwrap();
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(many.total_bytes()));
}

#[test]
fn reading_agrees_with_the_reference_safetensors_crate() {
    for dir in ["llama", "vicuna-base", "mistral-base"] {
        let w = Weights::open_dir(model(dir)).unwrap();
        let bytes = std::fs::read(model(dir).join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), w.len());
        for (name, view) in st.tensors() {
            let ours = w.get(&name).unwrap();
            assert_eq!(ours.bytes(), view.data(), "{dir}/{name}");
            assert_eq!(ours.shape(), view.shape());
        }
    }
    let w = Weights::open_dir(model("vicuna-base")).unwrap();
    let e = w.get("model.embed_tokens.weight").unwrap();
    assert_eq!((e.dtype(), e.shape()), (Dtype::F16, &[32000usize, 16][..]));
    let v = e.to_f32().unwrap();
    assert_eq!(v.len(), 32000 * 16);
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
}

#[test]
fn round_trip_write_read_preserves_everything() {
    let src = Weights::open_dir(model("llava-next")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("copy");
    let opts = WriterOptions {
        max_shard_bytes: 300_000,
        protected: vec![model("llava-next")],
        ..Default::default()
    };
    let mut w = CheckpointWriter::create(&out, opts).unwrap();
    for t in src.tensors() {
        w.add(t.name(), t.dtype(), t.shape(), t.bytes().to_vec()).unwrap();
    }
    w.copy_file(&model("llava-next").join("config.json"), "config.json")
        .unwrap();
    let summary = w.finish().unwrap();
    assert!(summary.shard_files.len() > 2, "{summary:?}");
    let back = ModelDir::open(&out).unwrap();
    assert_eq!(back.weights.len(), src.len());
    for t in src.tensors() {
        let u = back.weights.get(t.name()).unwrap();
        assert_eq!(
            (t.dtype(), t.shape(), t.bytes()),
            (u.dtype(), u.shape(), u.bytes()),
            "{}",
            t.name()
        );
    }
    // Every shard is also readable by the reference crate, with format=pt metadata as transformers wants.
    for f in &summary.shard_files {
        let bytes = std::fs::read(f).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        SafetensorsFile::open(f).unwrap();
    }
    // No temporary directory is left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("copy")]);
}

/// Writes the llava-1.5 fixture in another layout, so layout detection and mapping are tested on real names.
fn relayout(layout: LlavaLayout, dir: &Path) {
    let src = ModelDir::open(model("llava-1.5")).unwrap();
    let mut w = CheckpointWriter::create(dir, WriterOptions::default()).unwrap();
    for t in src.weights.tensors() {
        let name = layout.from_canonical(t.name()).unwrap();
        w.add(&name, t.dtype(), t.shape(), t.bytes().to_vec()).unwrap();
    }
    w.copy_file(&model("llava-1.5").join("config.json"), "config.json")
        .unwrap();
    w.finish().unwrap();
}

#[test]
fn all_three_llava_layouts_map_to_the_base_llm() {
    let base = ModelDir::open(model("vicuna-base")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for layout in [
        LlavaLayout::LlavaHf,
        LlavaLayout::Original,
        LlavaLayout::Transformers452,
    ] {
        let dir = tmp.path().join(format!("{layout:?}"));
        relayout(layout, &dir);
        let vlm = ModelDir::open(&dir).unwrap();
        assert_eq!(vlm.layout, Some(layout));
        let lm = vlm.language_model_tensors();
        assert_eq!(
            lm.len(),
            base.weights.len(),
            "{layout}: every base tensor has a VLM counterpart"
        );
        for (llm_name, vlm_name) in &lm {
            let b = base.weights.get(llm_name).unwrap();
            let v = vlm.weights.get(vlm_name).unwrap();
            if llm_name == "model.embed_tokens.weight" || llm_name == "lm_head.weight" {
                assert_eq!(
                    (b.shape()[0], v.shape()[0]),
                    (32000, 32064),
                    "{llm_name}: llava-hf pads the vocab"
                );
            } else {
                assert_eq!(b.shape(), v.shape(), "{llm_name}");
            }
        }
        let canon = vlm.canonical_names();
        assert!(
            canon.contains_key("multi_modal_projector.linear_1.weight"),
            "{layout}"
        );
        assert!(
            canon.contains_key("vision_tower.vision_model.post_layernorm.weight"),
            "{layout}"
        );
        let s = vlm.summary();
        assert_eq!(s.vocab_rows["lm_head.weight"], 32064);
        assert!(s.parts["vision_tower"].params > 0 && s.parts["multi_modal_projector"].params > 0);
    }
    assert_eq!(
        vlm_to_llm_name("language_model.model.norm.weight").as_deref(),
        Some("model.norm.weight")
    );
}

// ---- bad input: one test per error class, on real files ----

fn copy_file(tmp: &Path, name: &str) -> PathBuf {
    let p = tmp.join(name);
    std::fs::copy(model("llama").join("model.safetensors"), &p).unwrap();
    p
}

type HeaderEdit<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;

fn rewrite_header(path: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut json);
    let mut header = serde_json::to_vec(&json).unwrap();
    while header.len() < n {
        header.push(b' ');
    }
    assert_eq!(header.len(), n, "edit must not grow the header");
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn truncated_and_empty_files() {
    let tmp = tempfile::tempdir().unwrap();
    let p = copy_file(tmp.path(), "t.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = SafetensorsFile::open(&p).unwrap_err();
    assert!(matches!(e, CheckpointError::OffsetsOutOfBounds { .. }), "{e}");
    assert!(e.to_string().contains("t.safetensors"), "{e}");
    std::fs::write(&p, &bytes[..100]).unwrap();
    assert!(matches!(
        SafetensorsFile::open(&p).unwrap_err(),
        CheckpointError::HeaderPastEof { .. }
    ));
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        SafetensorsFile::open(&p).unwrap_err(),
        CheckpointError::Truncated { len: 0, .. }
    ));
    std::fs::write(&p, [1, 2, 3]).unwrap();
    assert!(matches!(
        SafetensorsFile::open(&p).unwrap_err(),
        CheckpointError::Truncated { len: 3, .. }
    ));
}

#[test]
fn corrupt_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let p = copy_file(tmp.path(), "h.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let mut b = bytes.clone();
    b[8] = b'#';
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(
        SafetensorsFile::open(&p).unwrap_err(),
        CheckpointError::HeaderJson { .. }
    ));

    let name = "model.norm.weight";
    let cases: Vec<(HeaderEdit, &str)> = vec![
        (Box::new(|j| j[name]["dtype"] = "Q4".into()), "UnknownDtype"),
        (
            Box::new(|j| j[name]["shape"] = serde_json::json!([33])),
            "SizeMismatch",
        ),
        (
            Box::new(|j| j[name]["data_offsets"] = serde_json::json!([0, 99999999])),
            "OffsetsOutOfBounds",
        ),
        (
            Box::new(|j| {
                let other = j["lm_head.weight"]["data_offsets"].clone();
                let b = other[0].as_u64().unwrap();
                j[name]["data_offsets"] = serde_json::json!([b, b + 128]);
            }),
            "OffsetsOverlap",
        ),
    ];
    for (edit, class) in cases {
        std::fs::write(&p, &bytes).unwrap();
        rewrite_header(&p, edit);
        let e = SafetensorsFile::open(&p).unwrap_err();
        assert!(format!("{e:?}").starts_with(class), "{class}: got {e:?}");
        assert!(e.to_string().contains("h.safetensors"), "{e}");
        assert!(e.to_string().contains(name) || class == "OffsetsOverlap", "{e}");
    }
}

fn sharded_copy(tmp: &Path, name: &str) -> PathBuf {
    let dst = tmp.join(name);
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(model("llama-sharded")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

#[test]
fn index_naming_a_missing_shard_or_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sharded_copy(tmp.path(), "first");
    std::fs::remove_file(dir.join("model-00003-of-00007.safetensors")).unwrap();
    let e = Weights::open_dir(&dir).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::IndexMissingShard { shard, .. } if shard == "model-00003-of-00007.safetensors"),
        "{e}"
    );

    let dir = sharded_copy(tmp.path(), "second");
    let index = dir.join("model.safetensors.index.json");
    let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    j["weight_map"]["model.ghost.weight"] = "model-00001-of-00007.safetensors".into();
    std::fs::write(&index, serde_json::to_vec(&j).unwrap()).unwrap();
    let e = Weights::open_dir(&dir).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::IndexMissingTensor { tensor, .. } if tensor == "model.ghost.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("model.safetensors.index.json"), "{e}");
}

#[test]
fn missing_tensor_and_wrong_shape_name_the_key() {
    let w = Weights::open_dir(model("llama")).unwrap();
    let e = w.get("model.layers.9.mlp.up_proj.weight").unwrap_err();
    assert!(e.to_string().contains("model.layers.9.mlp.up_proj.weight"), "{e}");
    let t = w.get("model.norm.weight").unwrap();
    assert!(t.expect(Some(Dtype::F32), &[32]).is_ok());
    let e = t.expect(None, &[64]).unwrap_err();
    assert!(
        e.to_string().contains("model.norm.weight") && e.to_string().contains("[64]"),
        "{e}"
    );
    assert!(matches!(
        t.to_i64().unwrap_err(),
        CheckpointError::Unexpected { .. }
    ));
    let e = Weights::open_dir(fixtures().join("licenses")).unwrap_err();
    assert!(matches!(e, CheckpointError::NoWeights { .. }), "{e}");
    let e = ModelDir::open(fixtures().join("licenses")).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
}

#[test]
fn writer_refuses_existing_output_and_inputs_and_cleans_up_on_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"old").unwrap();
    let e = CheckpointWriter::create(&out, WriterOptions::default()).unwrap_err();
    assert!(matches!(e, CheckpointError::OutputExists { .. }), "{e}");

    // A failure midway leaves neither a partial output nor a temporary directory; the old output survives.
    let mut w = CheckpointWriter::create(
        &out,
        WriterOptions {
            force: true,
            max_shard_bytes: 8,
            ..Default::default()
        },
    )
    .unwrap();
    w.add_f32("a", Dtype::F32, &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    w.add_f32("b", Dtype::BF16, &[2], &[1.0, 2.0]).unwrap();
    let e = w.add("c", Dtype::F32, &[3], vec![0; 8]).unwrap_err();
    assert!(e.to_string().contains("`c`"), "{e}");
    assert!(
        w.add_f32("a", Dtype::F32, &[1], &[0.0]).is_err(),
        "duplicate name"
    );
    drop(w);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"old");

    // With force, a complete write replaces the old directory.
    let mut w = CheckpointWriter::create(
        &out,
        WriterOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    w.add_f32("a", Dtype::F16, &[2], &[0.5, -2.0]).unwrap();
    w.finish().unwrap();
    assert!(!out.join("keep.txt").exists());
    let back = Weights::open_dir(&out).unwrap();
    assert_eq!(back.get("a").unwrap().to_f32().unwrap(), vec![0.5, -2.0]);

    // Never over an input, even with force, nor inside one.
    for bad in [model("llama"), model("llama").join("sub")] {
        let opts = WriterOptions {
            force: true,
            protected: vec![model("llama")],
            ..Default::default()
        };
        let e = CheckpointWriter::create(&bad, opts).unwrap_err();
        assert!(matches!(e, CheckpointError::OutputIsInput { .. }), "{e}");
    }
    assert!(model("llama").join("model.safetensors").is_file());
}

#[test]
fn pairing_the_fixture_vlms_with_their_base_llms() {
    for (vlm, llm) in [("llava-1.5", "vicuna-base"), ("llava-next", "mistral-base")] {
        let p = mmreason_checkpoint::Pairing::new(
            &ModelDir::open(model(vlm)).unwrap(),
            &ModelDir::open(model(llm)).unwrap(),
        );
        assert!(p.is_complete(), "{vlm}: {p}");
        let padded: Vec<&str> = p
            .paired
            .iter()
            .filter(|t| t.vocab_padded())
            .map(|t| t.llm_name.as_str())
            .collect();
        assert_eq!(
            padded,
            ["lm_head.weight", "model.embed_tokens.weight"]
                .iter()
                .copied()
                .filter(|n| padded.contains(n))
                .collect::<Vec<_>>()
        );
        assert_eq!(padded.len(), 2, "{vlm}");
    }
    // A mismatched pair is reported, not hidden.
    let p = mmreason_checkpoint::Pairing::new(
        &ModelDir::open(model("llava-1.5")).unwrap(),
        &ModelDir::open(model("llama")).unwrap(),
    );
    assert!(!p.is_complete() && !p.shape_conflicts.is_empty());
    assert!(p.to_string().contains("conflict"), "{p}");
}

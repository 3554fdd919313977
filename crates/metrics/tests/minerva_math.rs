//! minerva_math answer checking equals lm-eval 0.4.13's (tests/fixtures/metrics/minerva_math.json, made by
//! scripts/make_math_fixtures.py with sympy): the normalised gold of every distinct MATH test box, the
//! equivalence verdict on real and crafted answer pairs, and `exact_match` on crafted model outputs. The only
//! allowed disagreements are the documented ones where sympy proves a symbolic identity.

use mmreason_metrics::math::{is_equiv, minerva_exact_match, normalize_final_answer};
use serde_json::Value;

/// Pairs lm-eval calls equivalent through symbolic algebra, which the sympy-free port does not do.
const SYMBOLIC: &[(&str, &str)] = &[
    ("x+1", "1+x"),
    ("\\sqrt{8}", "2\\sqrt{2}"),
    ("\\frac{\\pi}{2}", "\\pi/2"),
];

fn fixture() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/metrics/minerva_math.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn gold_answers_normalise_as_lm_eval() {
    let f = fixture();
    let boxes = f["boxes"].as_array().unwrap();
    assert!(boxes.len() > 2000);
    for b in boxes {
        let (raw, want) = (b[0].as_str().unwrap(), b[1].as_str().unwrap());
        assert_eq!(normalize_final_answer(raw), want, "box content {raw:?}");
    }
}

#[test]
fn equivalence_agrees_with_sympy_except_symbolic_identities() {
    let f = fixture();
    let (mut agree, mut symbolic) = (0, 0);
    for e in f["equiv"].as_array().unwrap() {
        let (a, b, want) = (
            e[0].as_str().unwrap(),
            e[1].as_str().unwrap(),
            e[2].as_bool().unwrap(),
        );
        let got = is_equiv(a, b);
        if SYMBOLIC.contains(&(a, b)) {
            assert!(want && !got, "{a:?} vs {b:?}: the documented difference changed");
            symbolic += 1;
        } else {
            assert_eq!(got, want, "{a:?} vs {b:?}");
            agree += 1;
        }
    }
    assert_eq!(symbolic, SYMBOLIC.len());
    assert!(agree > 2000, "{agree} pairs");
}

#[test]
fn exact_match_of_model_outputs_equals_lm_eval() {
    let f = fixture();
    let outputs = f["outputs"].as_array().unwrap();
    let mut correct = 0;
    for o in outputs {
        let (text, gold) = (o["generation"].as_str().unwrap(), o["gold"].as_str().unwrap());
        let want = o["exact_match"].as_f64().unwrap();
        let got = minerva_exact_match(text, gold);
        if gold == "1+x" && text.contains("$x+1$") {
            // The documented symbolic difference, seen through a whole output.
            assert_eq!((got, want), (0.0, 1.0));
            continue;
        }
        assert_eq!(got, want, "{text:?} against {gold:?}");
        correct += got as usize;
    }
    // Both outcomes occur: the fixture tells right from wrong answers.
    assert!(
        correct > 20 && correct < outputs.len() - 20,
        "{correct} of {}",
        outputs.len()
    );
}

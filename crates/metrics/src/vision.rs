//! Scoring of vision-task answers as lmms-eval does it: yes/no parsing and POPE's precision/recall/F1, MME's
//! acc / acc+ / category scores, option letters for multiple choice (ScienceQA-IMG, MMBench), and VQA accuracy
//! with EvalAI's answer normalisation (TextVQA).

use std::sync::OnceLock;

use regex::Regex;

/// Options as `A. first\nB. second…`.
pub fn lettered(options: &[String]) -> String {
    options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{}. {o}", letter(i)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The letter of option `i` (A, B, …).
pub fn letter(i: usize) -> String {
    char::from_u32('A' as u32 + i as u32).map_or_else(|| "?".into(), |c| c.to_string())
}

/// 1 when the answer names `letter`: the whole answer (trimmed, case-insensitive), or a leading `X.`/`X)`/`X:`.
pub fn letter_match(out: &str, letter: &str) -> f64 {
    let t = out.trim();
    if t.eq_ignore_ascii_case(letter) {
        return 1.0;
    }
    let mut c = t.chars();
    let first = c.next();
    let second = c.next();
    let picked = match (first, second) {
        (Some(f), Some('.' | ')' | ':' | ' ')) if f.is_ascii_uppercase() => Some(f),
        (Some('('), Some(f)) if f.is_ascii_uppercase() => Some(f),
        _ => None,
    };
    f64::from(u8::from(picked.is_some_and(|p| p.to_string() == letter)))
}

/// 1 when the short answer equals the target after lower-casing, trimming and dropping a final period.
pub fn short_answer_match(out: &str, target: &str) -> f64 {
    let norm = |s: &str| s.trim().trim_end_matches('.').trim().to_lowercase();
    f64::from(u8::from(norm(out) == norm(target)))
}

/// POPE: (score, gold, prediction) with 1 = "yes"; the ground truth must be yes or no.
pub fn pope(out: &str, target: &str) -> Result<(f64, u8, u8), String> {
    let gold = match target.trim().to_lowercase().as_str() {
        "yes" => 1,
        "no" => 0,
        other => return Err(format!("answer `{other}` is not yes or no")),
    };
    let pred = out.trim().to_lowercase();
    let p = u8::from(pred == "yes");
    let score = f64::from(u8::from(pred == if gold == 1 { "yes" } else { "no" }));
    Ok((score, gold, p))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PopeScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub yes_ratio: f64,
}

/// Precision, recall and F1 of "yes" over (gold, prediction) pairs, and the share of "yes" predictions.
pub fn pope_scores(pairs: &[(u8, u8)]) -> PopeScores {
    let tp = pairs.iter().filter(|p| **p == (1, 1)).count() as f64;
    let fp = pairs.iter().filter(|p| **p == (0, 1)).count() as f64;
    let fn_ = pairs.iter().filter(|p| **p == (1, 0)).count() as f64;
    let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let precision = div(tp, tp + fp);
    let recall = div(tp, tp + fn_);
    PopeScores {
        precision,
        recall,
        f1: div(2.0 * precision * recall, precision + recall),
        yes_ratio: div(
            pairs.iter().filter(|p| p.1 == 1).count() as f64,
            pairs.len() as f64,
        ),
    }
}

/// MME's answer parsing: "yes"/"no" exactly, else from the first four characters, else "other".
pub fn mme_parse(out: &str) -> &'static str {
    let p = out.trim().to_lowercase();
    if p == "yes" {
        return "yes";
    }
    if p == "no" {
        return "no";
    }
    let head: String = p.chars().take(4).collect();
    if head.contains("yes") {
        "yes"
    } else if head.contains("no") {
        "no"
    } else {
        "other"
    }
}

pub fn mme_correct(out: &str, target: &str) -> bool {
    mme_parse(out) == target.trim().to_lowercase()
}

/// One MME question's outcome.
#[derive(Debug, Clone)]
pub struct MmeRow {
    pub category: String,
    /// The image the question is about (MME asks two questions per image).
    pub image: String,
    pub correct: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmeScores {
    pub acc_plus: f64,
    pub perception: f64,
    pub cognition: f64,
}

const MME_COGNITION: &[&str] = &[
    "code_reasoning",
    "numerical_calculation",
    "text_translation",
    "commonsense_reasoning",
];

/// acc+ (share of images with both questions right) over all, and the perception / cognition sums of
/// per-category (acc + acc+) × 100.
pub fn mme_scores(rows: &[MmeRow]) -> MmeScores {
    use std::collections::BTreeMap;
    let mut cats: BTreeMap<&str, BTreeMap<&str, Vec<bool>>> = BTreeMap::new();
    for r in rows {
        cats.entry(&r.category)
            .or_default()
            .entry(&r.image)
            .or_default()
            .push(r.correct);
    }
    let (mut perception, mut cognition, mut plus_all, mut images_all) = (0.0, 0.0, 0usize, 0usize);
    for (cat, images) in &cats {
        let qs: Vec<bool> = images.values().flatten().copied().collect();
        let acc = qs.iter().filter(|c| **c).count() as f64 / qs.len().max(1) as f64;
        let plus = images.values().filter(|v| v.iter().all(|c| *c)).count();
        plus_all += plus;
        images_all += images.len();
        let score = (acc + plus as f64 / images.len().max(1) as f64) * 100.0;
        if MME_COGNITION.contains(cat) {
            cognition += score;
        } else {
            perception += score;
        }
    }
    MmeScores {
        acc_plus: plus_all as f64 / images_all.max(1) as f64,
        perception,
        cognition,
    }
}

/// VQA accuracy of one answer against the human answers: for each of the n answers left out, min(1, matches
/// among the other n − 1 / 3), averaged — all answers normalised with [`normalize_vqa`].
pub fn vqa_accuracy(out: &str, answers: &[String]) -> f64 {
    if answers.is_empty() {
        return 0.0;
    }
    let pred = normalize_vqa(out);
    let gts: Vec<String> = answers.iter().map(|a| normalize_vqa(a)).collect();
    let accs: Vec<f64> = (0..gts.len())
        .map(|i| {
            let m = gts
                .iter()
                .enumerate()
                .filter(|(j, g)| *j != i && **g == pred)
                .count();
            (m as f64 / 3.0).min(1.0)
        })
        .collect();
    accs.iter().sum::<f64>() / accs.len() as f64
}

const PUNCT: &[char] = &[
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!',
];

fn number_word(w: &str) -> &str {
    match w {
        "none" | "zero" => "0",
        "one" => "1",
        "two" => "2",
        "three" => "3",
        "four" => "4",
        "five" => "5",
        "six" => "6",
        "seven" => "7",
        "eight" => "8",
        "nine" => "9",
        "ten" => "10",
        other => other,
    }
}

/// EvalAI's VQA answer normalisation: newlines/tabs to spaces, punctuation removed (or spaced), periods not
/// followed by a digit dropped, lower case, number words to digits, articles dropped, contractions restored.
pub fn normalize_vqa(s: &str) -> String {
    static COMMA_DIGITS: OnceLock<Regex> = OnceLock::new();
    static DIGIT: OnceLock<Regex> = OnceLock::new();
    let comma = COMMA_DIGITS.get_or_init(|| Regex::new(r"\d,\d").expect("static regex"));
    let digit = DIGIT.get_or_init(|| Regex::new(r"^\d").expect("static regex"));
    let t = s.replace(['\n', '\t'], " ");
    let t = t.trim();
    // Punctuation: removed where it touches a space (or the text has a digit,digit), else replaced by a space.
    let mut out = t.to_string();
    let has_comma_number = comma.is_match(t);
    for &p in PUNCT {
        let touches = t.contains(&format!("{p} ")) || t.contains(&format!(" {p}"));
        out = if touches || has_comma_number {
            out.replace(p, "")
        } else {
            out.replace(p, " ")
        };
    }
    // A period not followed by a digit is dropped.
    let chars: Vec<char> = out.chars().collect();
    let mut kept = String::with_capacity(out.len());
    for (i, &c) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(|n| digit.is_match(&n.to_string()));
        if c == '.' && !next_digit {
            continue;
        }
        kept.push(c);
    }
    let words: Vec<String> = kept
        .to_lowercase()
        .split_whitespace()
        .map(|w| number_word(w).to_string())
        .filter(|w| !matches!(w.as_str(), "a" | "an" | "the"))
        .map(|w| contraction(&w).map_or(w, str::to_string))
        .collect();
    words.join(" ")
}

/// EvalAI's contraction map (apostrophe-less forms → the spelled contraction).
fn contraction(w: &str) -> Option<&'static str> {
    CONTRACTIONS.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

const CONTRACTIONS: &[(&str, &str)] = &[];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_yes_no_and_vqa() {
        assert_eq!(lettered(&["x".into(), "y".into()]), "A. x\nB. y");
        assert_eq!(letter_match(" b ", "B"), 1.0);
        assert_eq!(letter_match("B. the second", "B"), 1.0);
        assert_eq!(letter_match("A", "B"), 0.0);
        assert_eq!(pope("Yes", "yes").unwrap(), (1.0, 1, 1));
        assert_eq!(pope("no", "yes").unwrap(), (0.0, 1, 0));
        assert!(pope("no", "maybe").is_err());
        let s = pope_scores(&[(1, 1), (0, 1), (1, 0), (0, 0)]);
        assert_eq!((s.precision, s.recall, s.f1, s.yes_ratio), (0.5, 0.5, 0.5, 0.5));
        assert_eq!(mme_parse("Yes, it is."), "yes");
        assert_eq!(mme_parse("Nope"), "no");
        assert_eq!(mme_parse("maybe"), "other");
        let rows = vec![
            MmeRow {
                category: "color".into(),
                image: "1.png".into(),
                correct: true,
            },
            MmeRow {
                category: "color".into(),
                image: "1.png".into(),
                correct: true,
            },
            MmeRow {
                category: "color".into(),
                image: "2.png".into(),
                correct: true,
            },
            MmeRow {
                category: "color".into(),
                image: "2.png".into(),
                correct: false,
            },
            MmeRow {
                category: "code_reasoning".into(),
                image: "3.png".into(),
                correct: false,
            },
            MmeRow {
                category: "code_reasoning".into(),
                image: "3.png".into(),
                correct: false,
            },
        ];
        let m = mme_scores(&rows);
        assert_eq!(m.perception, (0.75 + 0.5) * 100.0);
        assert_eq!(m.cognition, 0.0);
        assert_eq!(normalize_vqa("The Two dogs."), "2 dogs");
        assert_eq!(normalize_vqa("3.5"), "3.5");
        let answers: Vec<String> = ["2 dogs", "two dogs", "2", "dogs"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // "two dogs" and "2 dogs" normalise alike: leaving each answer out, the other 3 hold 1 or 2 matches.
        assert!(
            (vqa_accuracy("2 dogs", &answers) - (1.0 / 3.0 + 1.0 / 3.0 + 2.0 / 3.0 + 2.0 / 3.0) / 4.0).abs()
                < 1e-12
        );
    }
}

//! Scoring of vision-task answers as lmms-eval does it (EvolvingLMMs-Lab/lmms-eval @75571cfe; rules
//! summarised in docs/vision-tasks.md): POPE's exact yes/no and its precision/recall/F1, MME's answer parsing and
//! category scores, ScienceQA's letter match, MMBench's offline answer extraction (`mmbench_en_dev_static`) with
//! CircularEval, and TextVQA's VQA accuracy with EvalAI's answer normalisation, quirks included.

use std::sync::OnceLock;

use regex::Regex;

/// Python's `str.isspace` set: Unicode whitespace plus U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// Python's `str.split()`: runs of whitespace, no empty tokens.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_space).filter(|t| !t.is_empty())
}

/// Python's `str.capitalize()`: first character upper case, the rest lower case.
pub fn py_capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

/// The letter of option `i` (A, B, …).
pub fn letter(i: usize) -> String {
    char::from_u32('A' as u32 + i as u32).map_or_else(|| "?".into(), |c| c.to_string())
}

/// Options as `A. first\nB. second…` (ScienceQA's choices block).
pub fn lettered(options: &[String]) -> String {
    options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{}. {o}", letter(i)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// ScienceQA's letter match (LLaVA's rule): the stripped answer equals the letter in any case, or starts with
/// an upper-case letter followed by `.` and that letter is the target.
pub fn sqa_match(out: &str, letter: &str) -> f64 {
    let target = letter.to_lowercase();
    let pred = py_strip(out);
    if pred.to_lowercase() == target {
        return 1.0;
    }
    let c: Vec<char> = pred.chars().collect();
    if c.len() >= 2 && c[0].is_uppercase() && c[1] == '.' {
        return f64::from(u8::from(c[0].to_lowercase().to_string() == target));
    }
    0.0
}

/// easy-vqa (no lmms-eval task): exact match after EvalAI's normalisation of both sides.
pub fn short_answer_match(out: &str, target: &str) -> f64 {
    f64::from(u8::from(normalize_vqa(out) == normalize_vqa(target)))
}

/// POPE: (score, gold, prediction) — gold 1 = yes, 0 = no; prediction 1 = exactly "yes", 0 = exactly "no",
/// 2 = anything else, after lower-casing and stripping ("yes." is neither).
pub fn pope(out: &str, target: &str) -> Result<(f64, u8, u8), String> {
    let gold = match py_strip(&target.to_lowercase()) {
        "yes" => 1,
        "no" => 0,
        other => return Err(format!("answer `{other}` is not yes or no")),
    };
    let lower = out.to_lowercase();
    let pred = match py_strip(&lower) {
        "yes" => 1,
        "no" => 0,
        _ => 2,
    };
    Ok((f64::from(u8::from(pred == gold)), gold, pred))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PopeScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// lmms-eval computes it from the ground truth (0.5 on the balanced set); kept as such.
    pub yes_ratio: f64,
}

/// lmms-eval's POPE aggregates over (gold, prediction) pairs: TP = yes/yes, FP = no/yes, FN = yes/exactly-no
/// (a yes question answered neither yes nor no is in no count); 0 for an empty denominator.
pub fn pope_scores(pairs: &[(u8, u8)]) -> PopeScores {
    let count = |g: u8, p: u8| pairs.iter().filter(|x| **x == (g, p)).count() as f64;
    let (tp, fp, fn_) = (count(1, 1), count(0, 1), count(1, 0));
    let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let precision = div(tp, tp + fp);
    let recall = div(tp, tp + fn_);
    let yes = pairs.iter().filter(|x| x.0 == 1).count() as f64;
    PopeScores {
        precision,
        recall,
        f1: div(2.0 * precision * recall, precision + recall),
        yes_ratio: div(yes, pairs.len() as f64),
    }
}

/// MME's `parse_pred_ans`: lower-case, strip, delete every `.`; "yes"/"no" as is; one character: y → yes,
/// n → no; otherwise "yes" or (then) "no" within the first four characters; else "other".
pub fn mme_parse(out: &str) -> &'static str {
    let s: String = py_strip(&out.to_lowercase())
        .chars()
        .filter(|c| *c != '.')
        .collect();
    match s.as_str() {
        "yes" => return "yes",
        "no" => return "no",
        _ => {}
    }
    if s.chars().count() == 1 {
        return match s.as_str() {
            "y" => "yes",
            "n" => "no",
            _ => "other",
        };
    }
    let head: String = s.chars().take(4).collect();
    if head.contains("yes") {
        "yes"
    } else if head.contains("no") {
        "no"
    } else {
        "other"
    }
}

pub fn mme_correct(out: &str, target: &str) -> bool {
    let gold: String = py_strip(&target.to_lowercase())
        .chars()
        .filter(|c| *c != '.')
        .collect();
    mme_parse(out) == gold
}

/// One MME question's outcome.
#[derive(Debug, Clone)]
pub struct MmeRow {
    pub category: String,
    /// The image (`question_id`): MME asks two questions per image.
    pub image: String,
    pub correct: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmeScores {
    /// Share of questions answered right, and of images with both right (mmreason's summaries).
    pub acc: f64,
    pub acc_plus: f64,
    /// lmms-eval's scores: Σ over categories (first-seen order) of acc% + acc+%, perception and cognition apart.
    pub perception: f64,
    pub cognition: f64,
}

/// MME's perception categories (lmms-eval); every other category counts as cognition.
pub const MME_PERCEPTION: &[&str] = &[
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
];

/// MME's scores; every image must have exactly two questions, as lmms-eval asserts.
pub fn mme_scores(rows: &[MmeRow]) -> Result<MmeScores, String> {
    // Category → images → answers, in first-seen order.
    type Images<'a> = Vec<(&'a str, Vec<bool>)>;
    let mut cats: Vec<(&str, Images<'_>)> = Vec::new();
    for r in rows {
        let ci = match cats.iter().position(|(c, _)| *c == r.category) {
            Some(i) => i,
            None => {
                cats.push((&r.category, Vec::new()));
                cats.len() - 1
            }
        };
        let imgs = &mut cats[ci].1;
        match imgs.iter_mut().find(|(i, _)| *i == r.image) {
            Some((_, v)) => v.push(r.correct),
            None => imgs.push((&r.image, vec![r.correct])),
        }
    }
    let (mut perception, mut cognition) = (0.0, 0.0);
    let (mut right, mut questions, mut both, mut images) = (0usize, 0usize, 0usize, 0usize);
    for (cat, imgs) in &cats {
        let mut sum = 0.0;
        for (img, v) in imgs {
            if v.len() != 2 {
                return Err(format!("MME image `{img}` has {} questions, not 2", v.len()));
            }
            let s = v.iter().filter(|c| **c).count();
            sum += s as f64 / 2.0 * 100.0 + if s == 2 { 100.0 } else { 0.0 };
            right += s;
            questions += 2;
            both += usize::from(s == 2);
            images += 1;
        }
        let score = sum / imgs.len() as f64;
        if MME_PERCEPTION.contains(cat) {
            perception += score;
        } else {
            cognition += score;
        }
    }
    Ok(MmeScores {
        acc: right as f64 / questions.max(1) as f64,
        acc_plus: both as f64 / images.max(1) as f64,
        perception,
        cognition,
    })
}

/// MMBench's options block: `There are several options:\nA. …\nB. …` (present, non-"nan" options only).
pub fn mmbench_options(options: &[(char, String)]) -> String {
    let mut s = String::from("There are several options:\n");
    for (l, o) in options {
        s += &format!("{l}. {o}\n");
    }
    s.trim_end_matches('\n').to_string()
}

/// lmms-eval's `can_infer_option`: a lone option letter among the answer's tokens, or one in a fixed set of
/// wrappings (`A.`, `(A)`, `:A`, …); a leading "A" in a longer answer is read as the article.
fn can_infer_option(answer: &str) -> Option<char> {
    if answer.contains("Failed to obtain answer via API") {
        return None;
    }
    let splits: Vec<&str> = py_split(answer).map(py_strip).collect();
    let letters = ['A', 'B', 'C', 'D', 'E'];
    let has = |t: &str| splits.contains(&t);
    let lone: Vec<char> = letters.iter().copied().filter(|l| has(&l.to_string())).collect();
    if lone.len() == 1 {
        for l in letters {
            if has("A") && splits.len() > 3 {
                break;
            }
            if has(&l.to_string()) {
                return Some(l);
            }
        }
    }
    for (pre, suf) in [
        ("", "."),
        ("", ","),
        ("", ":"),
        ("", ")"),
        ("", ")."),
        ("(", ")"),
        ("(", ")."),
        (":", ""),
        (":", ","),
        (":", "."),
        (":", ")"),
        (":", ")."),
    ] {
        let hits: Vec<char> = letters
            .iter()
            .copied()
            .filter(|l| has(&format!("{pre}{l}{suf}")))
            .collect();
        if hits.len() == 1 {
            return Some(hits[0]);
        }
    }
    None
}

/// lmms-eval's `can_infer_text`: the one option whose text (lower-cased) occurs in the answer.
fn can_infer_text(answer: &str, choices: &[(char, String)]) -> Option<char> {
    let a = answer.to_lowercase();
    let cands: Vec<char> = choices
        .iter()
        .filter(|(_, v)| a.contains(&v.to_lowercase()))
        .map(|(l, _)| *l)
        .collect();
    (cands.len() == 1).then(|| cands[0])
}

const MCQ_PHRASES: &[&str] = &[
    "the answer is",
    "answer is",
    "the correct answer is",
    "correct answer is",
    "the best answer is",
    "best answer is",
    "the correct option is",
    "correct option is",
    "the best option is",
    "best option is",
    "the choice is",
    "choice is",
    "the correct choice is",
    "correct choice is",
    "i choose",
    "i select",
    "i pick",
    "my answer is",
    "my choice is",
    "옵션",
    "정답은",
    "답은",
    "답:",
    "答案是",
    "答案为",
    "选",
    "答えは",
];

/// lmms-eval's `extract_mcq_answer` (the static fallback): candidates by pattern with priorities (start 10,
/// end 9, phrase 7, `(L)` 6, `L.` 5, `L:` 4, `L)` 3, `L ` 2, anywhere 0), the highest (priority, position)
/// wins, the first inserted on ties. Positions are in characters.
fn extract_mcq_answer(response: &str, letters: &[char]) -> Option<char> {
    if py_strip(response).is_empty() {
        return None;
    }
    let mut t = py_strip(response).to_string();
    for ch in [',', '.', '!', '?', ';', ':', '\'', '"'] {
        t = t.trim_matches(ch).to_string();
    }
    let text: Vec<char> = format!(" {t} ").chars().collect();
    let s: String = text.iter().collect();
    let rfind = |pat: &str| -> Option<usize> {
        let p: Vec<char> = pat.chars().collect();
        (0..=text.len().saturating_sub(p.len()))
            .rev()
            .find(|&i| text[i..].starts_with(&p))
    };
    let find_from = |pat: &[char], from: usize| -> Option<usize> {
        (from..=text.len().saturating_sub(pat.len())).find(|&i| text[i..].starts_with(pat))
    };
    let mut cands: Vec<(char, usize, u8)> = Vec::new();
    for &l in letters {
        for (pat, prio) in [
            (format!("({l})"), 6),
            (format!("{l}."), 5),
            (format!("{l}:"), 4),
            (format!("{l})"), 3),
            (format!("{l} "), 2),
        ] {
            if let Some(p) = rfind(&pat) {
                cands.push((l, p, prio));
            }
        }
    }
    let lower: Vec<char> = s.to_lowercase().chars().collect();
    for ph in MCQ_PHRASES {
        let p: Vec<char> = ph.chars().collect();
        let Some(at) = (0..=lower.len().saturating_sub(p.len())).find(|&i| lower[i..].starts_with(&p)) else {
            continue;
        };
        for &l in letters {
            if let Some(pos) = find_from(&[l], at + p.len()) {
                cands.push((l, pos, 7));
            }
        }
    }
    let stripped: Vec<char> = py_strip(&s).chars().collect();
    for &l in letters {
        let n = stripped.len();
        if stripped.first() == Some(&l) && (n == 1 || !stripped[1].is_alphabetic()) {
            cands.push((l, 0, 10));
        }
        if stripped.last() == Some(&l) && (n == 1 || !stripped[n - 2].is_alphabetic()) {
            cands.push((l, text.len() - 1, 9));
        }
    }
    if cands.is_empty() {
        for &l in letters {
            if let Some(p) = rfind(&l.to_string()) {
                cands.push((l, p, 0));
            }
        }
    }
    // Python: sorted(key=(priority, position), reverse=True) is stable, so the first inserted wins ties.
    let mut best: Option<(char, usize, u8)> = None;
    for c in cands {
        if best.is_none_or(|b| (c.2, c.1) > (b.2, b.1)) {
            best = Some(c);
        }
    }
    best.map(|b| b.0)
}

/// MMBench's answer for one row (`can_infer`, then the static extraction over the present letters).
pub fn mmbench_answer(prediction: &str, choices: &[(char, String)]) -> Option<char> {
    let pred = py_strip(prediction);
    if let Some(l) = can_infer_option(pred).or_else(|| can_infer_text(pred, choices)) {
        return Some(l);
    }
    let mut letters: Vec<char> = choices.iter().map(|(l, _)| *l).collect();
    letters.sort_unstable();
    if letters.is_empty() {
        letters = ('A'..='H').collect();
    }
    extract_mcq_answer(pred, &letters)
}

/// VQA accuracy of one answer against the human answers: for each answer left out, min(1, matches among the
/// others / 3), averaged — every string normalised with [`normalize_vqa`] first.
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

/// EvalAI's answer processor as lmms-eval runs it, in order: lower-case, delete `,` and `?`, `'s` → ` 's`,
/// strip; newlines and tabs to spaces, strip; each punctuation mark deleted everywhere when any instance of it
/// touches a space, else replaced by a space; up to 32 periods not followed by a digit deleted (the source
/// passes `re.UNICODE` where the count goes); lower-case, split, number words to digits, articles dropped,
/// contractions restored, joined by single spaces.
pub fn normalize_vqa(s: &str) -> String {
    static DIGIT: OnceLock<Regex> = OnceLock::new();
    let digit = DIGIT.get_or_init(|| Regex::new(r"^\d").expect("static regex"));
    let t = s.to_lowercase().replace([',', '?'], "").replace("'s", " 's");
    let t = py_strip(&t).replace(['\n', '\t'], " ");
    let original = py_strip(&t).to_string();
    let mut out = original.clone();
    for &p in PUNCT {
        let touches = original.contains(&format!("{p} ")) || original.contains(&format!(" {p}"));
        out = if touches {
            out.replace(p, "")
        } else {
            out.replace(p, " ")
        };
    }
    let chars: Vec<char> = out.chars().collect();
    let mut kept = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(|n| digit.is_match(&n.to_string()));
        if c == '.' && !next_digit && removed < 32 {
            removed += 1;
            continue;
        }
        kept.push(c);
    }
    let lower = kept.to_lowercase();
    let words: Vec<&str> = py_split(&lower)
        .map(number_word)
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(|w| contraction(w).unwrap_or(w))
        .collect();
    words.join(" ")
}

/// EvalAI's contraction map (keys with capitals or `'s` can never match after the earlier steps; kept as the
/// source has them, `somebody'd → somebodyd` included).
fn contraction(w: &str) -> Option<&'static str> {
    CONTRACTIONS.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evalai_normalisation_matches_the_python_processor() {
        // Outputs of lmms-eval's EvalAIAnswerProcessor on these inputs (docs/vision-tasks.md).
        for (i, o) in [
            ("Yes.", "yes"),
            ("The answer is Two.", "answer is 2"),
            ("hello-world", "hello world"),
            ("well - known", "well known"),
            ("a-b -c", "ab c"),
            ("3.14", "3.14"),
            ("1,000", "1000"),
            ("a..1", "a.1"),
            ("It's a dog's toy", "it 's dog 's toy"),
            ("  Coca-Cola\n", "coca cola"),
            ("NASA's (logo)", "nasa 's logo"),
            ("none", "0"),
            ("dont", "don't"),
            ("let's go", "let 's go"),
            ("e.g. U.S.A.", "eg usa"),
            ("5:30 p.m.", "5:30 pm"),
            ("$1.50.", "$1.50"),
            ("an apple", "apple"),
            ("the", ""),
        ] {
            assert_eq!(normalize_vqa(i), o, "{i:?}");
        }
        assert_eq!(normalize_vqa(&".".repeat(40)), ".".repeat(8));
        // Leave-one-out over 10 answers: m matches → 0, 0.3, 0.6, 0.9, then 1.
        let ans = |m: usize| -> Vec<String> {
            (0..10)
                .map(|i| if i < m { "dog".into() } else { "cat".into() })
                .collect()
        };
        for (m, want) in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)] {
            assert!((vqa_accuracy("Dog.", &ans(m)) - want).abs() < 1e-12, "{m}");
        }
    }

    #[test]
    fn yes_no_letters_and_mmbench_extraction() {
        assert_eq!(pope("Yes", "yes").unwrap(), (1.0, 1, 1));
        assert_eq!(pope("yes.", "yes").unwrap(), (0.0, 1, 2));
        assert!(pope("no", "maybe").is_err());
        let s = pope_scores(&[(1, 1), (0, 1), (1, 0), (0, 0), (1, 2)]);
        assert_eq!((s.precision, s.recall), (0.5, 0.5));
        assert_eq!(s.yes_ratio, 0.6);
        for (o, p) in [
            ("Yes, it is", "yes"),
            ("not sure", "no"),
            ("none", "no"),
            ("Y.", "yes"),
            ("", "other"),
            ("I think yes", "other"),
        ] {
            assert_eq!(mme_parse(o), p, "{o:?}");
        }
        let rows: Vec<MmeRow> = [
            ("color", "1", true),
            ("color", "1", true),
            ("color", "2", true),
            ("color", "2", false),
        ]
        .iter()
        .map(|(c, i, k)| MmeRow {
            category: c.to_string(),
            image: i.to_string(),
            correct: *k,
        })
        .collect();
        let m = mme_scores(&rows).unwrap();
        assert_eq!(
            (m.perception, m.cognition, m.acc, m.acc_plus),
            (75.0 + 50.0, 0.0, 0.75, 0.5)
        );
        assert!(mme_scores(&rows[..3]).is_err());
        for (o, ok) in [
            ("B", 1.0),
            ("b", 1.0),
            ("B.", 1.0),
            ("B. yellow", 1.0),
            (" b ", 1.0),
            ("(B)", 0.0),
            ("B)", 0.0),
            ("b.", 0.0),
            ("The answer is B", 0.0),
        ] {
            assert_eq!(sqa_match(o, "B"), ok, "{o:?}");
        }
        let ch: Vec<(char, String)> = vec![
            ('A', "cat".into()),
            ('B', "dog".into()),
            ('C', "teddy bear".into()),
        ];
        assert_eq!(mmbench_answer("A dog is shown here", &ch), Some('B'));
        assert_eq!(mmbench_answer("teddy bear", &ch), Some('C'));
        assert_eq!(mmbench_answer("A B", &ch), Some('A'));
        assert_eq!(mmbench_answer("It is a cat or dog", &ch), None);
        assert_eq!(mmbench_answer("Answer: D", &ch), Some('D'));
        assert_eq!(
            py_capitalize("what does the NASA sign say?"),
            "What does the nasa sign say?"
        );
    }
}

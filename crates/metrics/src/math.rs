//! MATH final-answer checking as lm-evaluation-harness's `minerva_math` tasks do it
//! (`lm_eval/tasks/minerva_math/utils.py`, lm-eval 0.4.13): the gold answer is the last `\boxed{…}` of the
//! reference solution, the model's answer is what follows "Final Answer: The final answer is", both are
//! normalised by Minerva's rules (Lewkowycz et al., 2022, appendix D, with lm-eval's later fixes), and two
//! answers are equivalent when the normalised strings are equal or — lm-eval asks sympy here — they denote the
//! same number.
//!
//! The string functions are ported rule for rule (regexes without look-around rewritten by hand). The
//! equivalence is ported **without sympy**: both answers are read as LaTeX arithmetic — sympy's number token
//! (thousands groups `1,234`, no `.5`, `5.` or `012`), `\frac`/`\dfrac`/`\tfrac`, `+ - * /`, `\cdot`, `\times`,
//! `\div`, integer powers, parentheses and braces, implicit multiplication (`2\frac{1}{2}` = 1) — exactly while
//! only integers and fractions are involved and in binary floating point once a decimal is (as sympy's `Float`),
//! and, as sympy's parser, a complete expression followed by `,`, `)`, `}` or `]` is read as that expression
//! (so lm-eval, and this port, score the list `4,7` equal to `4,6,14,15`). Where lm-eval still differs: it
//! also proves symbolic identities (`x+1` vs `1+x`, `\sqrt{8}` vs `2\sqrt{2}`, `\frac{\pi}{2}` vs `\pi/2`),
//! which this port scores as different; it multiplies out odd token runs sympy's grammar accepts (`3\;4`,
//! `2^-1`); and a decimal of 16 or more digits is held exactly here where sympy widens its float. The fixture
//! `tests/fixtures/metrics/minerva_math.json` (lm-eval's own verdicts on every distinct MATH test answer and
//! crafted cases) pins everything else.

use std::sync::OnceLock;

use regex::Regex;

use crate::vision::py_strip;

/// lm-eval's answer when the output has no "Final Answer: The final answer is … I hope it is correct." line.
pub const INVALID_ANSWER: &str = "[invalidanswer]";

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// The last `\boxed{…}` (or `\fbox{…}`) of a solution with its braces balanced, or the `\boxed ` form up to
/// the next `$`; `None` when there is none or its braces never close (lm-eval's `last_boxed_only_string`).
pub fn last_boxed_only_string(s: &str) -> Option<String> {
    let boxed = s.rfind("\\boxed");
    if s.contains("\\boxed ") {
        let tail = s.rsplit("\\boxed ").next().unwrap_or_default();
        return Some(format!("\\boxed {}", tail.split('$').next().unwrap_or_default()));
    }
    let start = boxed.or_else(|| s.rfind("\\fbox"))?;
    let mut open = 0i64;
    for (i, b) in s.bytes().enumerate().skip(start) {
        match b {
            b'{' => open += 1,
            b'}' => {
                open -= 1;
                if open == 0 {
                    return Some(s[start..=i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The inside of `\boxed{…}` / after `\boxed `; `None` where lm-eval's assertions fail (`\fbox`, no braces).
pub fn remove_boxed(s: &str) -> Option<&str> {
    if s.contains("\\boxed ") {
        return s.strip_prefix("\\boxed ");
    }
    s.strip_prefix("\\boxed{")?.strip_suffix('}')
}

/// The reference answer of a MATH solution: normalised content of its last box (lm-eval's `process_docs`).
pub fn gold_answer(solution: &str) -> Option<String> {
    let boxed = last_boxed_only_string(solution)?;
    Some(normalize_final_answer(remove_boxed(&boxed)?))
}

/// The model's unnormalised answer: the text between "Final Answer: The final answer is" and ". I hope it is
/// correct." (the first such line; the closing phrase is appended first, so a cut-off line still counts), else
/// [`INVALID_ANSWER`] (lm-eval's `get_unnormalized_answer`).
pub fn get_unnormalized_answer(text: &str) -> String {
    static FINAL: OnceLock<Regex> = OnceLock::new();
    let r = re(
        &FINAL,
        r"Final Answer: The final answer is(.*?). I hope it is correct.",
    );
    let text = format!("{text}I hope it is correct.");
    match r.captures(&text) {
        Some(c) => py_strip(c.get(1).map_or("", |m| m.as_str())).to_string(),
        None => INVALID_ANSWER.to_string(),
    }
}

const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
];

const REMOVED_EXPRESSIONS: &[&str] = &[
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "ft",
    "hours",
    "km",
    "units",
    "\\ldots",
    "sue",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "gm",
    "pounds",
    "meters",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    "\\mathrm{th}",
    "^\\circ",
    "^{\\circ}",
    "\\;",
    ",\\!",
    "{,}",
    "\"",
    "\\dots",
];

/// Python's `str.isalpha` for these ASCII words.
fn is_word(expr: &str) -> bool {
    !expr.is_empty() && expr.chars().all(char::is_alphabetic)
}

/// `re.sub(rf"(?<!\\)\b{word}\b", "", s)`: whole-word occurrences not preceded by a backslash. A match is a whole
/// word, so resuming after a skipped one misses nothing.
fn remove_unit_word(s: &str, r: &Regex) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for m in r.find_iter(s) {
        if s[..m.start()].ends_with('\\') {
            continue;
        }
        out.push_str(&s[last..m.start()]);
        last = m.end();
    }
    out.push_str(&s[last..]);
    out
}

/// `expr` removed outside LaTeX command names (`re.split(r"(\\[a-zA-Z]+)", s)`, even segments only), so "ft"
/// cannot eat the middle of `\left`.
fn remove_outside_commands(s: &str, expr: &str) -> String {
    static CMD: OnceLock<Regex> = OnceLock::new();
    let cmd = re(&CMD, r"\\[a-zA-Z]+");
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for m in cmd.find_iter(s) {
        out.push_str(&s[last..m.start()].replace(expr, ""));
        out.push_str(m.as_str());
        last = m.end();
    }
    out.push_str(&s[last..].replace(expr, ""));
    out
}

/// Minerva's answer normalisation as lm-eval applies it (`normalize_final_answer`): the part after the last
/// `=`, units and filler words removed, `$…$`/`\text{}`/`\textbf{}`/`\overline{}`/`\boxed{}` unwrapped,
/// `\fracab` and `\sqrta` shorthand braced, `$` dropped, thousands separators of a plain integer removed.
pub fn normalize_final_answer(answer: &str) -> String {
    static MATH: OnceLock<Regex> = OnceLock::new();
    static TEXT: OnceLock<Regex> = OnceLock::new();
    static TEXTBF: OnceLock<Regex> = OnceLock::new();
    static OVERLINE: OnceLock<Regex> = OnceLock::new();
    static BOXED: OnceLock<Regex> = OnceLock::new();
    static FRAC: OnceLock<Regex> = OnceLock::new();
    static ROOT_INDEX: OnceLock<Regex> = OnceLock::new();
    static ROOT: OnceLock<Regex> = OnceLock::new();
    static THOUSANDS: OnceLock<Regex> = OnceLock::new();

    let mut a = answer.rsplit('=').next().unwrap_or_default().to_string();
    // The whole-word patterns of the unit words, compiled once (this runs for every answer scored).
    static UNIT_WORDS: OnceLock<Vec<Regex>> = OnceLock::new();
    let unit_words = UNIT_WORDS.get_or_init(|| {
        REMOVED_EXPRESSIONS
            .iter()
            .filter(|e| is_word(e))
            .map(|w| Regex::new(&format!(r"\b{}\b", regex::escape(w))).expect("escaped word"))
            .collect()
    });
    for r in unit_words {
        a = remove_unit_word(&a, r);
    }
    for (before, after) in SUBSTITUTIONS {
        a = a.replace(before, after);
    }
    for expr in REMOVED_EXPRESSIONS {
        a = if is_word(expr) {
            remove_outside_commands(&a, expr)
        } else {
            a.replace(expr, "")
        };
    }
    a = re(&MATH, r"(.*?)(\$)(.*?)(\$)(.*)")
        .replace_all(&a, |c: &regex::Captures<'_>| format!("${}$", &c[3]))
        .into_owned();
    for (cell, pattern) in [
        (&TEXT, r"(\\text\{)(.*?)(\})"),
        (&TEXTBF, r"(\\textbf\{)(.*?)(\})"),
        (&OVERLINE, r"(\\overline\{)(.*?)(\})"),
        (&BOXED, r"(\\boxed\{)(.*)(\})"),
    ] {
        a = re(cell, pattern)
            .replace_all(&a, |c: &regex::Captures<'_>| c[2].to_string())
            .into_owned();
    }
    a = re(&FRAC, r"(frac)([^{])(.)")
        .replace_all(&a, |c: &regex::Captures<'_>| {
            format!("frac{{{}}}{{{}}}", &c[2], &c[3])
        })
        .into_owned();
    a = re(&ROOT_INDEX, r"(sqrt)(\[[^\]]*\])(\w)")
        .replace_all(&a, |c: &regex::Captures<'_>| {
            format!("sqrt{}{{{}}}", &c[2], &c[3])
        })
        .into_owned();
    // `(sqrt)(?!\[)([^{])`: the one character after "sqrt" is neither "[" nor "{".
    a = re(&ROOT, r"(sqrt)([^{\[])")
        .replace_all(&a, |c: &regex::Captures<'_>| format!("sqrt{{{}}}", &c[2]))
        .into_owned();
    a = a.replace('$', "");
    if re(&THOUSANDS, r"^-?\d{1,3}(,\d{3})+$").is_match(&a) {
        a = a.replace(',', "");
    }
    a
}

/// Whether two normalised answers are the same: equal non-empty strings, or the same number (see the module
/// documentation for what lm-eval's sympy check accepts beyond this).
pub fn is_equiv(x1: &str, x2: &str) -> bool {
    if !x1.is_empty() && x1 == x2 {
        return true;
    }
    match (latex_number(x1), latex_number(x2)) {
        (Some(a), Some(b)) => a.same_as(b),
        _ => false,
    }
}

/// lm-eval's minerva_math `exact_match` of one generation against the document's normalised answer.
pub fn minerva_exact_match(generation: &str, gold: &str) -> f64 {
    let answer = normalize_final_answer(&get_unnormalized_answer(generation));
    f64::from(u8::from(is_equiv(&answer, gold)))
}

/// An exact rational `n/d` (`d > 0`, lowest terms); arithmetic that overflows `i128` gives `None` (the answers
/// are then treated as not comparable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rational {
    n: i128,
    d: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Rational {
    fn new(n: i128, d: i128) -> Option<Self> {
        if d == 0 {
            return None;
        }
        let g = gcd(n, d).max(1);
        let (n, d) = (n / g, d / g);
        if d < 0 {
            Some(Self {
                n: n.checked_neg()?,
                d: d.checked_neg()?,
            })
        } else {
            Some(Self { n, d })
        }
    }
    fn int(n: i128) -> Self {
        Self { n, d: 1 }
    }
    /// The nearest double (exact division when both parts are exact doubles, as sympy's conversion).
    fn to_f64(self) -> f64 {
        self.n as f64 / self.d as f64
    }
}

/// A value as sympy holds it: exact (integers, `\frac`) until a decimal literal makes it a 53-bit float —
/// lm-eval compares `0.1+0.2` with `0.3` in binary floating point and finds them different, and so does this.
#[derive(Debug, Clone, Copy)]
enum Num {
    Exact(Rational),
    Float(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::Exact(r) => r.to_f64(),
            Num::Float(x) => x,
        }
    }
    fn exact_or_float(
        self,
        o: Num,
        exact: impl FnOnce(Rational, Rational) -> Option<Rational>,
        float: impl FnOnce(f64, f64) -> f64,
    ) -> Option<Num> {
        match (self, o) {
            (Num::Exact(a), Num::Exact(b)) => exact(a, b).map(Num::Exact),
            _ => {
                let v = float(self.f(), o.f());
                v.is_finite().then_some(Num::Float(v))
            }
        }
    }
    fn add(self, o: Num) -> Option<Num> {
        self.exact_or_float(
            o,
            |a, b| {
                Rational::new(
                    a.n.checked_mul(b.d)?.checked_add(b.n.checked_mul(a.d)?)?,
                    a.d.checked_mul(b.d)?,
                )
            },
            |a, b| a + b,
        )
    }
    fn neg(self) -> Option<Num> {
        Some(match self {
            Num::Exact(r) => Num::Exact(Rational {
                n: r.n.checked_neg()?,
                d: r.d,
            }),
            Num::Float(x) => Num::Float(-x),
        })
    }
    fn mul(self, o: Num) -> Option<Num> {
        self.exact_or_float(
            o,
            |a, b| Rational::new(a.n.checked_mul(b.n)?, a.d.checked_mul(b.d)?),
            |a, b| a * b,
        )
    }
    fn div(self, o: Num) -> Option<Num> {
        self.exact_or_float(
            o,
            |a, b| Rational::new(a.n.checked_mul(b.d)?, a.d.checked_mul(b.n)?),
            |a, b| a / b,
        )
    }
    fn pow(self, e: Num) -> Option<Num> {
        let Num::Exact(e) = e else { return None };
        if e.d != 1 || e.n.abs() > 128 {
            return None;
        }
        let k = i32::try_from(e.n).ok()?;
        match self {
            Num::Exact(b) => {
                let k = k.unsigned_abs();
                let p = Num::Exact(Rational::new(b.n.checked_pow(k)?, b.d.checked_pow(k)?)?);
                if e.n < 0 {
                    Num::Exact(Rational::int(1)).div(p)
                } else {
                    Some(p)
                }
            }
            Num::Float(x) => {
                let v = x.powi(k);
                v.is_finite().then_some(Num::Float(v))
            }
        }
    }
    /// sympy's `simplify(a - b) == 0`: exact equality, or a float difference of exactly zero.
    fn same_as(self, o: Num) -> bool {
        match (self, o) {
            (Num::Exact(a), Num::Exact(b)) => a == b,
            _ => self.f() - o.f() == 0.0,
        }
    }
}

/// The value of a normalised answer read as LaTeX arithmetic, if it is nothing but numbers and operators.
/// As sympy's `parse_latex` (an ANTLR parser that stops at the first token its top rule cannot take), a
/// complete expression followed by `,`, `)`, `}` or `]` is read as that expression: lm-eval thus scores the
/// list `4,7` as equal to `4,6,14,15`, and so does this port.
fn latex_number(s: &str) -> Option<Num> {
    let mut p = Parser {
        s: s.as_bytes(),
        i: 0,
    };
    let v = p.expr()?;
    p.skip_space();
    let rest = &p.s[p.i..];
    match rest.first() {
        None => Some(v),
        // ANTLR lexes on demand: text after the stopping token is never looked at (`1,2.` reads as 1).
        Some(b',' | b')' | b'}' | b']') => Some(v),
        Some(_) => None,
    }
}

/// A recursive-descent reader of LaTeX arithmetic (the subset sympy's `parse_latex` turns into a number).
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.s.get(self.i).copied()
    }
    /// Consumes `lit` (after spaces) if it comes next; a command must not run on into more letters.
    fn eat(&mut self, lit: &str) -> bool {
        self.skip_space();
        let rest = &self.s[self.i..];
        if !rest.starts_with(lit.as_bytes()) {
            return false;
        }
        if lit.starts_with('\\') && rest.get(lit.len()).is_some_and(u8::is_ascii_alphabetic) {
            return false;
        }
        self.i += lit.len();
        true
    }
    fn expr(&mut self) -> Option<Num> {
        let mut v = self.term()?;
        loop {
            if self.eat("+") {
                v = v.add(self.term()?)?;
            } else if self.eat("-") {
                v = v.add(self.term()?.neg()?)?;
            } else {
                return Some(v);
            }
        }
    }
    fn term(&mut self) -> Option<Num> {
        let mut v = self.unary()?;
        loop {
            if self.eat("*") || self.eat("\\cdot") || self.eat("\\times") {
                v = v.mul(self.unary()?)?;
            } else if self.eat("/") || self.eat("\\div") {
                v = v.div(self.unary()?)?;
            } else if self.starts_factor() {
                // Implicit multiplication, as sympy reads `2\frac{1}{2}` (= 1) and `1,0000` (= 1000·0).
                v = v.mul(self.power()?)?;
            } else {
                return Some(v);
            }
        }
    }
    fn starts_factor(&mut self) -> bool {
        match self.peek() {
            Some(b'(' | b'{' | b'0'..=b'9') => true,
            Some(b'\\') => {
                let rest = &self.s[self.i..];
                ["\\frac", "\\dfrac", "\\tfrac", "\\left("]
                    .iter()
                    .any(|c| rest.starts_with(c.as_bytes()))
            }
            _ => false,
        }
    }
    fn unary(&mut self) -> Option<Num> {
        if self.eat("-") {
            return self.unary()?.neg();
        }
        if self.eat("+") {
            return self.unary();
        }
        self.power()
    }
    fn power(&mut self) -> Option<Num> {
        let base = self.primary()?;
        if !self.eat("^") {
            return Some(base);
        }
        let exp = if self.peek() == Some(b'{') {
            self.braced()?
        } else {
            // An unbraced exponent is one character: `2^10` is 2¹·0 in LaTeX.
            let c = self.s.get(self.i).copied().filter(u8::is_ascii_digit)?;
            self.i += 1;
            Num::Exact(Rational::int(i128::from(c - b'0')))
        };
        base.pow(exp)
    }
    fn braced(&mut self) -> Option<Num> {
        if !self.eat("{") {
            return None;
        }
        let v = self.expr()?;
        self.eat("}").then_some(v)
    }
    fn primary(&mut self) -> Option<Num> {
        match self.peek()? {
            b'{' => self.braced(),
            b'(' => {
                self.i += 1;
                let v = self.expr()?;
                self.eat(")").then_some(v)
            }
            b'0'..=b'9' => self.number(),
            _ => {
                if self.eat("\\frac") || self.eat("\\dfrac") || self.eat("\\tfrac") {
                    let num = self.braced()?;
                    let den = self.braced()?;
                    num.div(den)
                } else if self.eat("\\left(") {
                    let v = self.expr()?;
                    self.eat("\\right)").then_some(v)
                } else {
                    None
                }
            }
        }
    }
    /// sympy's NUMBER token: digits, thousands groups `,ddd`, then an optional `.digits`. Like sympy, an
    /// integer with a leading zero (`012`) is an error and so is a point without digits after it (`5.`).
    fn number(&mut self) -> Option<Num> {
        let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
        let mut text = String::new();
        while digit(self.s, self.i) {
            text.push(char::from(self.s[self.i]));
            self.i += 1;
        }
        while self.s.get(self.i) == Some(&b',') && (1..=3).all(|k| digit(self.s, self.i + k)) {
            text.extend(self.s[self.i + 1..self.i + 4].iter().map(|&c| char::from(c)));
            self.i += 4;
        }
        if self.s.get(self.i) == Some(&b'.') {
            if !digit(self.s, self.i + 1) {
                return None;
            }
            let f0 = self.i + 1;
            self.i = f0;
            while digit(self.s, self.i) {
                self.i += 1;
            }
            let frac = &self.s[f0..self.i];
            // sympy gives a decimal max(15, its digit count) digits of precision: up to 15 digits that is a
            // double; a longer decimal is held exactly, as near enough what sympy's wider float compares.
            let significant = text.trim_start_matches('0').len()
                + if text.trim_start_matches('0').is_empty() {
                    frac.iter().skip_while(|&&c| c == b'0').count()
                } else {
                    frac.len()
                };
            text.extend(frac.iter().map(|&c| char::from(c)));
            if significant > 15 {
                let scale = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
                return Rational::new(text.parse::<i128>().ok()?, scale).map(Num::Exact);
            }
            let k = text.len() - frac.len();
            return format!("{}.{}", &text[..k], &text[k..])
                .parse::<f64>()
                .ok()
                .map(Num::Float);
        }
        if text.len() > 1 && text.starts_with('0') {
            return None;
        }
        text.parse::<i128>().ok().map(|n| Num::Exact(Rational::int(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_found_and_unwrapped() {
        let s = r"so $x = \boxed{\frac{9}{7}}$ and not \boxed{1}{2} ... final \boxed{\dfrac{a}{b}}.";
        assert_eq!(
            last_boxed_only_string(s).as_deref(),
            Some(r"\boxed{\dfrac{a}{b}}")
        );
        assert_eq!(
            last_boxed_only_string(r"\boxed 5$ and").as_deref(),
            Some(r"\boxed 5")
        );
        assert_eq!(last_boxed_only_string(r"\boxed{unclosed"), None);
        assert_eq!(last_boxed_only_string("nothing"), None);
        assert_eq!(remove_boxed(r"\boxed{12}"), Some("12"));
        assert_eq!(remove_boxed(r"\fbox{12}"), None);
        assert_eq!(gold_answer(r"Thus $\boxed{1,000}$."), Some("1000".into()));
    }

    #[test]
    fn final_answer_line_and_normalisation() {
        let g = "Work...\nFinal Answer: The final answer is $\\frac{9}{7}$. I hope it is correct.\nProblem:";
        assert_eq!(get_unnormalized_answer(g), "$\\frac{9}{7}$");
        assert_eq!(get_unnormalized_answer("no answer"), INVALID_ANSWER);
        // Cut off before the closing phrase: the appended phrase still closes it.
        assert_eq!(
            get_unnormalized_answer("Final Answer: The final answer is 12. "),
            "12"
        );
        assert_eq!(normalize_final_answer("$x = 10$ cm"), "10");
        assert_eq!(normalize_final_answer("\\$1,234 dollars"), "1234");
        assert_eq!(normalize_final_answer("0,1"), "0,1");
        assert_eq!(normalize_final_answer("\\frac12"), "\\frac{1}{2}");
        assert_eq!(normalize_final_answer("\\sqrt[3]8"), "\\sqrt[3]{8}");
        assert_eq!(normalize_final_answer("2\\sqrt3"), "2\\sqrt{3}");
        // "ft" is a unit, but not inside `\left`.
        assert_eq!(
            normalize_final_answer("\\left(1,2\\right) ft"),
            "\\left(1,2\\right)"
        );
        assert_eq!(normalize_final_answer("90^\\circ"), "90");
        assert_eq!(normalize_final_answer("\\text{(A)}"), "(A)");
    }

    #[test]
    fn numbers_compare_exactly() {
        assert!(is_equiv("\\frac{1}{2}", "0.5"));
        assert!(is_equiv("\\dfrac{9}{7}", "\\frac{9}{7}"));
        assert!(is_equiv("-\\frac{2}{3}", "\\frac{-2}{3}"));
        assert!(is_equiv("187.5", "\\frac{375}{2}"));
        assert!(is_equiv("10", "10.0"));
        assert!(!is_equiv(".5", "\\frac{1}{2}"), "sympy has no `.5`");
        assert!(!is_equiv("012", "12") && !is_equiv("5.", "5"));
        assert!(!is_equiv("0.1+0.2", "0.3"), "binary floats, as sympy");
        assert!(
            is_equiv("4,6,14,15", "4,7") && is_equiv("1,234.50", "1234.5") && !is_equiv("(1,2)", "(1,5)")
        );
        assert!(is_equiv("2^{10}", "1024"));
        assert!(is_equiv("2\\frac{1}{2}", "1"));
        assert!(is_equiv("(1+2)\\cdot3", "9"));
        assert!(!is_equiv("0.333", "\\frac{1}{3}"));
        assert!(!is_equiv("x+1", "1+x"));
        assert!(!is_equiv("", ""));
        assert!(!is_equiv("\\frac{1}{0}", "\\frac{1}{0}x"));
        assert!(!is_equiv("99999999999999999999999999999999999999999999", "1"));
        assert_eq!(
            minerva_exact_match(
                "Final Answer: The final answer is $0.5$. I hope it is correct.",
                "\\frac{1}{2}"
            ),
            1.0
        );
        assert_eq!(minerva_exact_match("The answer is 5.", "5"), 0.0);
    }
}

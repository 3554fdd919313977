//! The tasks mmreason ships (`crates/tasks/tasks/*.yaml`, lm-eval's definitions adapted to local data), looked up
//! by name; an unknown name gets the closest known names back.

use std::path::Path;

use crate::error::{Result, TasksError};
use crate::task::TaskConfig;

const BUILTIN: &[(&str, &str)] = &[
    ("arc_challenge", include_str!("../tasks/arc_challenge.yaml")),
    ("arc_easy", include_str!("../tasks/arc_easy.yaml")),
    (
        "bigbench_strategyqa",
        include_str!("../tasks/bigbench_strategyqa.yaml"),
    ),
    ("boolq", include_str!("../tasks/boolq.yaml")),
    ("commonsense_qa", include_str!("../tasks/commonsense_qa.yaml")),
    ("gsm8k", include_str!("../tasks/gsm8k.yaml")),
    ("gsm8k_cot", include_str!("../tasks/gsm8k_cot.yaml")),
    ("hellaswag", include_str!("../tasks/hellaswag.yaml")),
    ("minerva_math", include_str!("../tasks/minerva_math.yaml")),
    ("mmlu", include_str!("../tasks/mmlu.yaml")),
    ("openbookqa", include_str!("../tasks/openbookqa.yaml")),
    ("piqa", include_str!("../tasks/piqa.yaml")),
    ("race", include_str!("../tasks/race.yaml")),
    ("social_iqa", include_str!("../tasks/social_iqa.yaml")),
    ("winogrande", include_str!("../tasks/winogrande.yaml")),
];

/// Names of the bundled tasks.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// A bundled task by name, a task YAML file by path (how a user adds a task: lm-eval's fields, see
/// `tasks/*.yaml`), or an error listing the closest names.
pub fn task(name: &str) -> Result<TaskConfig> {
    let path = Path::new(name);
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return TaskConfig::from_file(path);
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => TaskConfig::from_yaml(text, Path::new(&format!("tasks/{n}.yaml"))),
        None => Err(TasksError::UnknownTask {
            name: name.into(),
            close: close_matches(name, &names()),
            known: names().join(", "),
        }),
    }
}

/// Up to three names within edit distance ⌈len/3⌉ (or sharing a prefix of 4+), closest first.
pub fn close_matches(name: &str, known: &[&str]) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= name.len().div_ceil(3) || (name.len() >= 4 && k.starts_with(&name[..4])))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, k)| k.to_string()).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_task_parses_and_unknown_names_get_suggestions() {
        for n in names() {
            let t = task(n).unwrap();
            assert_eq!(t.task, n);
            assert!(t.version().is_some(), "{n} has metadata.version");
        }
        let e = task("gsm8").unwrap_err().to_string();
        assert!(e.contains("gsm8k"), "{e}");
        let e = task("arc-easy").unwrap_err().to_string();
        assert!(e.contains("did you mean arc_easy"), "{e}");
        assert!(close_matches("zzzzzz", &names()).is_empty());
        // A user's own YAML file by path.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("my_task.yaml");
        std::fs::write(
            &p,
            include_str!("../tasks/piqa.yaml").replace("task: piqa", "task: my_task"),
        )
        .unwrap();
        assert_eq!(task(p.to_str().unwrap()).unwrap().task, "my_task");
        let e = task("/no/such/task.yaml").unwrap_err().to_string();
        assert!(e.contains("/no/such/task.yaml"), "{e}");
    }
}

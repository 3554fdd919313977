//! `combine`: joins the outputs of `evaluate --shard i/n` (run by a scheduler's array job, see
//! docs/scale-out.md) into one run directory whose `results.json` metrics and samples files equal an
//! unsharded run's: samples are merged in document order and every metric recomputed from the per-document
//! values with the same functions, in the same order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mmreason_metrics::mean;
use serde_json::{Value, json};

use crate::error::{EvalError, Result, io, read_json, write_atomic};

/// Combines shard directories into `output` (which must not hold another run).
pub fn combine(shards: &[PathBuf], output: &Path) -> Result<()> {
    let Some(first) = shards.first() else {
        return Err(EvalError::Input(
            "combine needs at least one shard directory".into(),
        ));
    };
    // Every shard must come from the same configuration, and together cover i = 0..n once.
    let mut run0 = read_json(&first.join("run.json"))?;
    let mut seen = Vec::new();
    for s in shards {
        let mut run = read_json(&s.join("run.json"))?;
        let shard = run
            .as_object_mut()
            .and_then(|o| o.remove("shard"))
            .and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| {
                EvalError::Input(format!("{} is not a shard (run.json has no shard)", s.display()))
            })?;
        let base = run0.as_object_mut().expect("object");
        base.remove("shard");
        if run != run0 {
            return Err(EvalError::OtherRun {
                dir: s.clone(),
                what: format!("its run.json differs from {}'s beyond the shard", first.display()),
            });
        }
        seen.push(shard);
    }
    let n: usize = seen[0]
        .split_once('/')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| EvalError::Input(format!("bad shard `{}`", seen[0])))?;
    let mut want: Vec<String> = (0..n).map(|i| format!("{i}/{n}")).collect();
    let mut got = seen.clone();
    want.sort();
    got.sort();
    if want != got {
        return Err(EvalError::Input(format!(
            "shards {} do not cover {want:?} exactly once",
            seen.join(", ")
        )));
    }
    let mut results = read_json(&first.join("results.json"))?;
    let tasks: Vec<String> = results["results"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    std::fs::create_dir_all(output).map_err(io(output))?;
    if output.join("results.json").exists() {
        return Err(EvalError::OtherRun {
            dir: output.into(),
            what: "it already holds results.json".into(),
        });
    }
    for task in &tasks {
        let mut lines: Vec<(u64, usize, Value)> = Vec::new();
        for (si, s) in shards.iter().enumerate() {
            let p = s.join(format!("samples_{task}.jsonl"));
            let text = std::fs::read_to_string(&p).map_err(io(&p))?;
            for (li, line) in text.lines().enumerate() {
                let v: Value = serde_json::from_str(line).map_err(|e| EvalError::BadFile {
                    path: p.clone(),
                    message: format!("line {}: {e}", li + 1),
                })?;
                let id = v["doc_id"].as_u64().ok_or_else(|| EvalError::BadFile {
                    path: p.clone(),
                    message: format!("line {}: no doc_id", li + 1),
                })?;
                lines.push((id, si * 1_000_000 + li, v));
            }
        }
        // Document order; a document's lines (one per filter) keep their order.
        lines.sort_by_key(|(id, order, _)| (*id, *order));
        let keys: Vec<String> = results["results"][task]
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| k.contains(',') && !k.contains("_stderr"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        // A grouped task (mmlu, minerva_math) pools its stderr per subtask, as in the unsharded run.
        let group: Option<mmreason_tasks::GroupStderr> = results["configs"][task]
            .get("group_stderr")
            .and_then(|g| serde_json::from_value(g.clone()).ok());
        let mut per_key: BTreeMap<&str, (Vec<f64>, Vec<String>)> = BTreeMap::new();
        for k in &keys {
            let (metric, filter) = k.split_once(',').expect("has ','");
            let (xs, subtasks) = lines
                .iter()
                .filter(|(_, _, v)| v["filter"].as_str().unwrap_or("none") == filter)
                .filter_map(|(_, _, v)| {
                    let sub = group
                        .as_ref()
                        .map_or(String::new(), |g| crate::results::subtask_of(v["doc"].get(&g.by)));
                    v[metric].as_f64().map(|x| (x, sub))
                })
                .unzip();
            per_key.insert(k, (xs, subtasks));
        }
        let docs: std::collections::BTreeSet<u64> = lines.iter().map(|(id, _, _)| *id).collect();
        let entry = &mut results["results"][task];
        for (k, (xs, subtasks)) in &per_key {
            let (metric, filter) = k.split_once(',').expect("has ','");
            entry[*k] = json!(mean(xs)?);
            let stderr =
                crate::results::stderr_of(xs, group.as_ref().map(|g| (g, subtasks.as_slice())), task)?;
            entry[format!("{metric}_stderr,{filter}")] = stderr.map_or(json!("N/A"), |s| json!(s));
        }
        results["n-samples"][task]["effective"] = json!(docs.len());
        let text: String = lines.iter().map(|(_, _, v)| v.to_string() + "\n").collect();
        write_atomic(&output.join(format!("samples_{task}.jsonl")), text.as_bytes())?;
    }
    results["config"]["shard"] = Value::Null;
    results["combined_from"] = json!(shards.iter().map(|s| s.display().to_string()).collect::<Vec<_>>());
    write_atomic(
        &output.join("results.json"),
        (serde_json::to_string_pretty(&results).expect("json") + "\n").as_bytes(),
    )?;
    write_atomic(
        &output.join("run.json"),
        serde_json::to_string_pretty(&run0).expect("json").as_bytes(),
    )
}

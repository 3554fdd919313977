//! Task definitions (planned, see the README's status table): lm-evaluation-harness YAML tasks rendered with
//! Jinja, local JSONL/Parquet data, few-shot sampling, `loglikelihood` / `generate_until` requests and filters.
//! This crate knows no model. Empty until its issue lands.

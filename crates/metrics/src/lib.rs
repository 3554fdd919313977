//! Scoring metrics (planned, see the README's status table): acc, acc_norm, exact_match, stderr as
//! lm-evaluation-harness computes them, plus paired bootstrap, McNemar and Holm for LLM-vs-VLM comparisons.
//! This crate knows no model. Empty until its issue lands.

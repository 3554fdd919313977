//! The evaluation harness (planned, see the README's status table): runs tasks against models, writes
//! lm-evaluation-harness-shaped results, compares runs, sweeps merges. Empty until its issue lands.

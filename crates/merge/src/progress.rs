//! Progress reporting for long merges: a bar with tensors/s and bytes/s on a terminal, silent otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over tensors that also counts bytes read.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    bytes: u64,
}

impl Progress {
    /// A bar for `total` tensors; `visible = false` (tests, JSON output) draws nothing.
    pub fn new(phase: &str, total: u64, visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} tensors {per_sec} · {msg} · ETA {eta}",
            )
            .expect("static template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(phase.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// One tensor done, `bytes` read for it.
    pub fn tick(&mut self, bytes: u64) {
        self.bytes += bytes;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar
            .set_message(format!("{:.1} MB/s", self.bytes as f64 / secs / 1e6));
        self.bar.inc(1);
    }

    /// Ends the bar; returns (seconds, bytes).
    pub fn finish(self) -> (f64, u64) {
        self.bar.finish_and_clear();
        (self.started.elapsed().as_secs_f64(), self.bytes)
    }
}

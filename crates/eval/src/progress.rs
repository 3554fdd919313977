//! One progress bar per phase with requests/s and ETA on a terminal; nothing in tests or when asked not to.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) fn bar(phase: &str, total: u64, done: u64, visible: bool) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} requests · {per_sec} · ETA {eta}")
            .expect("static template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(phase.to_string());
    bar.set_position(done);
    bar.reset_eta();
    if visible {
        bar.enable_steady_tick(Duration::from_millis(250));
    }
    bar
}

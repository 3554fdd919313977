//! Where one forward's device time goes, every kernel included (`MMREASON_TIMELINE=1`, burn-cuda).
//!
//! cubecl's kernel profiler (`benches/gpu/profile.sh`) times cubecl's kernels only: cuBLAS's products and our
//! NVRTC kernels — nine tenths of a 7B prefill — are not in it, nor are the gaps between launches. Run 10's
//! prefill left ≈ 15 of its 109 ms unaccounted for by that profile and the kernel benches together. Here the
//! models mark the end of each step of a forward ([`mark`]): a CUDA event recorded on burn's stream, on
//! cubecl's device thread after everything queued before it, so the time between two marks is the device time
//! of the step between them, idle time included. While the device is behind the host (a 7B prefill is issued
//! in about a quarter of its wall time) an idle stretch inside a step is the device waiting on something other
//! than the host's issuing, which is what this is for.
//!
//! A mark costs the host a round trip to cubecl's device thread (tens of microseconds), so a recorded forward
//! is not a timed one: the throughput example records one more forward after its timed repeats. Off CUDA, or
//! with nothing recording, [`mark`] returns at once.

use burn::tensor::{Tensor, backend::Backend};
use serde::Serialize;

/// Whether a forward on backend `B` is to be recorded: `MMREASON_TIMELINE=1` asks (read once) and `B` is
/// burn-cuda. Elsewhere marks record nothing, so a recorded forward would be work for nothing.
pub fn wanted<B: Backend>() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    #[cfg(feature = "cuda")]
    let cuda = std::any::TypeId::of::<B>() == std::any::TypeId::of::<crate::backend::CudaBackend>();
    #[cfg(not(feature = "cuda"))]
    let cuda = false;
    cuda && *WANTED.get_or_init(|| std::env::var("MMREASON_TIMELINE").as_deref() == Ok("1"))
}

/// One forward's device time by step, in the order the steps first ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub steps: Vec<TimelineStep>,
    /// From the first mark to the last: the sum of the steps.
    pub total_ms: f64,
    /// Intervals timed: one fewer than the marks recorded (the first mark only starts the clock).
    pub intervals: usize,
}

/// Every interval that ended with a mark of this name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineStep {
    pub name: String,
    pub count: u64,
    pub ms: f64,
    /// Floating-point operations of the step's products (0 for steps that are not products).
    pub flop: f64,
}

impl Timeline {
    /// Sums consecutive intervals by the name of the mark that ended each: `(name, ms since the previous mark,
    /// flop)`.
    pub fn from_intervals<'a>(intervals: impl IntoIterator<Item = (&'a str, f64, f64)>) -> Timeline {
        let mut t = Timeline::default();
        for (name, ms, flop) in intervals {
            t.intervals += 1;
            t.total_ms += ms;
            match t.steps.iter_mut().find(|s| s.name == name) {
                Some(s) => {
                    s.count += 1;
                    s.ms += ms;
                    s.flop += flop;
                }
                None => t.steps.push(TimelineStep {
                    name: name.to_string(),
                    count: 1,
                    ms,
                    flop,
                }),
            }
        }
        t
    }

    /// A Markdown table: each step's milliseconds, share, calls, time per call and (for products) TFLOP/s;
    /// with `wall_ms` (the same work timed without marks) a last line sets the marked total against it.
    pub fn markdown(&self, wall_ms: Option<f64>) -> String {
        let mut out = String::from(
            "| step | calls | total ms | µs per call | share | TFLOP/s |\n|---|---|---|---|---|---|\n",
        );
        for s in &self.steps {
            let share = if self.total_ms > 0.0 {
                100.0 * s.ms / self.total_ms
            } else {
                0.0
            };
            let rate = if s.flop > 0.0 && s.ms > 0.0 {
                format!("{:.1}", s.flop / (s.ms * 1e-3) / 1e12)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| {} | {} | {:.2} | {:.1} | {:.1} % | {} |\n",
                s.name,
                s.count,
                s.ms,
                1e3 * s.ms / s.count.max(1) as f64,
                share,
                rate
            ));
        }
        out.push_str(&format!(
            "| **all marked steps** | {} | {:.2} | | 100 % | |\n",
            self.intervals, self.total_ms
        ));
        if let Some(wall) = wall_ms {
            out.push_str(&format!(
                "\nThe same work unmarked (best timed run): {wall:.2} ms; marked, first to last mark: {:.2} ms.\n",
                self.total_ms
            ));
        }
        out
    }
}

/// Floating-point operations of a product whose output is `y` over an inner dimension of `k`.
pub fn product_flop<B: Backend, const D: usize>(y: &Tensor<B, D>, k: usize) -> f64 {
    2.0 * y.shape().num_elements() as f64 * k as f64
}

/// A recorded mark: its step, the product's flop, and the CUDA event and context (as addresses).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Mark {
    name: &'static str,
    flop: f64,
    event: usize,
    ctx: usize,
}

thread_local! {
    /// This thread's recording: its marks so far, or why recording failed (the first error); `None` when not
    /// recording. Per thread, so that a forward on another thread (tests run side by side) is not mixed in.
    static MARKS: std::cell::RefCell<Option<Result<Vec<Mark>, String>>> = const { std::cell::RefCell::new(None) };
}

/// Starts recording on this thread: every [`mark`] it makes from here to [`finish`] is kept.
pub fn start() {
    MARKS.with(|m| release(m.replace(Some(Ok(Vec::new())))));
}

/// Marks the end of step `name` after the work that produced `t` (on its device's stream; `flop`: the step's
/// product work, 0 for others). Does nothing unless this thread is recording on burn-cuda.
pub fn mark<B: Backend, const D: usize>(t: &Tensor<B, D>, name: &'static str, flop: f64) {
    MARKS.with(|m| {
        let mut m = m.borrow_mut();
        let Some(Ok(marks)) = m.as_mut() else {
            return;
        };
        #[cfg(feature = "cuda")]
        {
            use burn_cubecl::cubecl::cuda::CudaRuntime;
            let Some(cube) = crate::fused::cube::primitive_of::<B, CudaRuntime, D>(t.clone()) else {
                return;
            };
            match crate::fused::nvrtc::record_event(&cube) {
                Ok((event, ctx)) => marks.push(Mark {
                    name,
                    flop,
                    event,
                    ctx,
                }),
                Err(crate::fused::nvrtc::Refusal::Declined(e) | crate::fused::nvrtc::Refusal::Device(e)) => {
                    release(m.replace(Err(format!("recording the mark after `{name}`: {e}"))));
                }
            }
        }
        #[cfg(not(feature = "cuda"))]
        let _ = (marks, t, name, flop);
    });
}

/// Stops recording on this thread and waits for the last mark: the timeline of what was marked since
/// [`start`] (`None`: no mark was recorded — not on burn-cuda, or not started), or why it could not be.
pub fn finish() -> Result<Option<Timeline>, String> {
    let marks = match MARKS.with(|m| m.borrow_mut().take()) {
        None => return Ok(None),
        Some(marks) => marks?,
    };
    if marks.is_empty() {
        return Ok(None);
    }
    let timed = intervals(&marks);
    release(Some(Ok(marks)));
    let timed = timed?;
    Ok(Some(Timeline::from_intervals(
        timed.iter().map(|(name, ms, flop)| (*name, *ms, *flop)),
    )))
}

/// Milliseconds between consecutive marks, each under the later mark's name.
#[cfg(feature = "cuda")]
fn intervals(marks: &[Mark]) -> Result<Vec<(&'static str, f64, f64)>, String> {
    use cudarc::driver::{result as drv, sys as dsys};
    let (Some(first), Some(last)) = (marks.first(), marks.last()) else {
        return Ok(Vec::new());
    };
    if marks.iter().any(|m| m.ctx != first.ctx) {
        return Err("marks were recorded on more than one device".into());
    }
    crate::fused::nvrtc::with_context(first.ctx, || {
        // SAFETY: every event was created and recorded by `record_event` in this context and is not destroyed
        // before `release`.
        unsafe {
            drv::event::synchronize(last.event as dsys::CUevent)
                .map_err(|e| format!("waiting for the last mark: {e:?}"))?;
            marks
                .windows(2)
                .map(|w| {
                    drv::event::elapsed(w[0].event as dsys::CUevent, w[1].event as dsys::CUevent)
                        .map(|ms| (w[1].name, f64::from(ms), w[1].flop))
                        .map_err(|e| {
                            format!(
                                "the time between marks `{}` and `{}`: {e:?}",
                                w[0].name, w[1].name
                            )
                        })
                })
                .collect()
        }
    })
}

#[cfg(not(feature = "cuda"))]
fn intervals(_: &[Mark]) -> Result<Vec<(&'static str, f64, f64)>, String> {
    Ok(Vec::new())
}

/// Destroys the events of `marks` (asynchronously, if they are still pending).
fn release(marks: Option<Result<Vec<Mark>, String>>) {
    #[cfg(feature = "cuda")]
    if let Some(Ok(marks)) = marks
        && let Some(first) = marks.first()
    {
        let _ = crate::fused::nvrtc::with_context(first.ctx, || {
            for m in &marks {
                // SAFETY: created by `record_event` in this context, destroyed once (the marks are consumed).
                let _ = unsafe {
                    cudarc::driver::result::event::destroy(m.event as cudarc::driver::sys::CUevent)
                };
            }
            Ok(())
        });
    }
    #[cfg(not(feature = "cuda"))]
    let _ = marks;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_summed_by_the_step_that_ended_them() {
        let t = Timeline::from_intervals([
            ("norm", 1.0, 0.0),
            ("product", 4.0, 8e9),
            ("norm", 0.5, 0.0),
            ("product", 6.0, 8e9),
        ]);
        assert_eq!(t.intervals, 4);
        assert_eq!(t.total_ms, 11.5);
        assert_eq!(
            t.steps,
            vec![
                TimelineStep {
                    name: "norm".into(),
                    count: 2,
                    ms: 1.5,
                    flop: 0.0
                },
                TimelineStep {
                    name: "product".into(),
                    count: 2,
                    ms: 10.0,
                    flop: 1.6e10
                },
            ]
        );
        let md = t.markdown(Some(12.0));
        // 1.6e10 flop in 10 ms: 1.6 TFLOP/s; 10 of 11.5 ms: 87.0 %.
        assert!(
            md.contains("| product | 2 | 10.00 | 5000.0 | 87.0 % | 1.6 |"),
            "{md}"
        );
        assert!(md.contains("| norm | 2 | 1.50 | 750.0 | 13.0 % |  |"), "{md}");
        assert!(md.contains("| **all marked steps** | 4 | 11.50 |"), "{md}");
        assert!(md.contains("unmarked (best timed run): 12.00 ms"), "{md}");
    }

    #[test]
    fn marks_off_cuda_record_nothing() {
        let x = Tensor::<crate::CpuBackend, 2>::zeros([2, 3], &Default::default());
        // Not recording: nothing to finish.
        mark(&x, "norm", 0.0);
        assert_eq!(finish(), Ok(None));
        // Recording on the CPU backend: the marks are not CUDA's, so no timeline either.
        start();
        mark(&x, "norm", 0.0);
        mark(&x, "product", 1.0);
        assert_eq!(finish(), Ok(None));
    }

    #[test]
    fn no_intervals_no_marks() {
        let t = Timeline::from_intervals(std::iter::empty());
        assert_eq!((t.intervals, t.total_ms, t.steps.len()), (0, 0.0, 0));
    }
}

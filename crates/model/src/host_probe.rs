//! The `host_probe` example's work: what a busy spell of the host costs beyond its own length when the next
//! thing is a round trip to cubecl's device thread, with the spell on the calling thread or on the device
//! thread itself.
//!
//! cubecl 0.10 runs each device's operations on one thread of its own, which sleeps in 150 µs steps once it
//! has been idle for a few hundred microseconds. A host wait on the calling thread (for cuBLAS's stream, say)
//! leaves it idle; the next operation then pays for its waking. [`crate::gemm::cuda::host_thread`] makes the
//! cuBLAS waits on the device thread for this reason; these figures show the effect on any cubecl backend.

use serde::Serialize;

use crate::backend::BackendKind;
use crate::error::{ModelError, Result};

/// One away time, one side.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeFigures {
    pub backend: String,
    /// How long the host was busy before the round trip (µs).
    pub away_us: u64,
    /// Whether that wait ran on cubecl's device thread (`ComputeClient::exclusive`) or the caller's.
    pub on_device_thread: bool,
    pub samples: usize,
    /// Time from the start of the busy spell to the end of the round trip after it, less the spell (µs): the
    /// round trip, plus on the device thread the hand-over there and back.
    pub median_us: f64,
    pub p90_us: f64,
}

/// Figures for every away time in `aways_us`, the caller's thread first, then the device thread's.
pub fn run(backend: BackendKind, aways_us: &[u64], samples: usize) -> Result<Vec<ProbeFigures>> {
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let _ = (aways_us, samples);
    match backend {
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            use burn_cubecl::cubecl::wgpu::{WgpuDevice, WgpuRuntime};
            probe::<WgpuRuntime>(backend, &WgpuDevice::default(), aways_us, samples)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            use burn_cubecl::cubecl::cuda::{CudaDevice, CudaRuntime};
            crate::backend::check_cuda()?;
            probe::<CudaRuntime>(backend, &CudaDevice::default(), aways_us, samples)
        }
        other => Err(ModelError::Input(format!(
            "host_probe measures cubecl's device thread: --backend wgpu or cuda (a build with that feature), \
             not {}",
            other.name()
        ))),
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn probe<R: burn_cubecl::cubecl::Runtime>(
    backend: BackendKind,
    device: &R::Device,
    aways_us: &[u64],
    samples: usize,
) -> Result<Vec<ProbeFigures>> {
    use std::time::{Duration, Instant};
    let client = R::client(device);
    let samples = samples.max(1);
    let fail = |e: burn_cubecl::cubecl::server::ServerError| ModelError::Input(format!("cubecl: {e:?}"));
    // Starts the device thread.
    client.memory_usage().map_err(fail)?;
    let mut out = Vec::new();
    for on_device_thread in [false, true] {
        for &away in aways_us {
            let mut times = Vec::with_capacity(samples);
            for _ in 0..samples {
                let t0 = Instant::now();
                // The spell's clock starts where it runs: on the device thread the hand-over there counts
                // as cost, not as part of the spell.
                let busy = move || {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(away) {
                        std::hint::spin_loop();
                    }
                };
                if on_device_thread {
                    client.exclusive(busy).map_err(fail)?;
                } else {
                    busy();
                }
                client.memory_usage().map_err(fail)?;
                times.push(t0.elapsed().as_secs_f64() * 1e6 - away as f64);
            }
            times.sort_by(f64::total_cmp);
            let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
            out.push(ProbeFigures {
                backend: backend.name().into(),
                away_us: away,
                on_device_thread,
                samples,
                median_us: at(0.5),
                p90_us: at(0.9),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_backend_is_refused_with_the_reason() {
        let e = run(BackendKind::Cpu, &[0], 1).unwrap_err().to_string();
        assert!(e.contains("wgpu or cuda"), "{e}");
    }

    #[cfg(feature = "wgpu")]
    #[test]
    fn measures_both_sides_at_every_away_time() {
        let f = run(BackendKind::Wgpu, &[0, 50], 3).unwrap();
        let sides: Vec<(u64, bool)> = f.iter().map(|p| (p.away_us, p.on_device_thread)).collect();
        assert_eq!(sides, [(0, false), (50, false), (0, true), (50, true)]);
        assert!(
            f.iter()
                .all(|p| p.median_us.is_finite() && p.p90_us >= p.median_us && p.samples == 3)
        );
    }
}

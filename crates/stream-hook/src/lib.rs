//! The CUDA stream on which cubecl-cuda last resolved a resource, on the current thread.
//!
//! cubecl-cuda 0.10 runs burn's kernels on CUDA streams of its own and hands none of them out, so a product
//! in cuBLAS (`mmreason-model`'s `gemm::cuda`) has had to be ordered with burn's work from outside: by the host
//! (two host waits per product) or by flag kernels spinning on the device. This workspace builds cubecl-cuda
//! from `vendor/cubecl-cuda` (`[patch.crates-io]` in the workspace manifest), whose only change is one call:
//! its server's `get_resource` records here the stream the request was resolved for — the calling
//! `StreamId`'s stream, the one burn queues that thread's kernels on. Code that runs on cubecl's device thread
//! (`ComputeClient::exclusive`, where `get_resource` runs inline) can then [`take`] that stream and queue
//! cuBLAS on it, in burn's order, with no synchronisation at all.
//!
//! The hook lives in a crate of its own so that both sides link it without either depending on the other,
//! and so that `mmreason-model` still builds against an unpatched cubecl-cuda (a workspace that uses it as a
//! library without this patch): then nothing is ever recorded, [`take`] gives `None`, and the caller keeps
//! ordering from outside.

use std::cell::Cell;
use std::ffi::c_void;

thread_local! {
    /// The raw `CUstream` of the last resolved resource on this thread; 0 when none or taken.
    static LAST: Cell<usize> = const { Cell::new(0) };
}

/// Records `stream` (a `CUstream`) as the one this thread's last resource was resolved for. Called by the
/// patched cubecl-cuda; a null stream clears the record.
pub fn record(stream: *mut c_void) {
    LAST.with(|l| l.set(stream as usize));
}

/// The stream recorded on this thread since the last `take`, if any, and clears it: a caller that first
/// takes (discarding), then resolves a resource, then takes again reads only what that resolution recorded.
pub fn take() -> Option<*mut c_void> {
    let raw = LAST.with(|l| l.replace(0));
    (raw != 0).then_some(raw as *mut c_void)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_stream_is_taken_once_and_only_on_its_thread() {
        assert_eq!(take(), None);
        let stream = 0x1000usize as *mut c_void;
        record(stream);
        // Another thread has its own record.
        assert_eq!(
            std::thread::spawn(|| take().map(|p| p as usize)).join().ok(),
            Some(None)
        );
        assert_eq!(take(), Some(stream));
        assert_eq!(take(), None);
        record(std::ptr::null_mut());
        assert_eq!(take(), None);
    }
}

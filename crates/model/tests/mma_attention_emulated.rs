//! The mma attention kernel (`src/fused/mma_attention.cu`, `MMREASON_ATTENTION=mma`) run on the CPU: the
//! harness in `emulate/` includes the kernel's own source, emulates its warp-level operations (mma.sync in the
//! PTX ISA's fragment layouts, shuffles, cp.async held back until waited for, barriers) and compares the output
//! with attention in f64 — grouped heads, lengths that are not whole tiles, a cache longer than the keys read
//! (NaN past them), a permuted query layout, a cached prefix, left padding with rows masked throughout, and a
//! sliding window. This is the only check of the kernel's logic on a machine without a GPU; it needs a C++20
//! compiler (`c++`, as Rust's linker set-up usually brings).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (bf16, head size, mask mode: 0 none, 1 causal, 2 additive mask): each mode, dtype and head size at least
/// twice, as the model paths use them (CLIP: 64 unmasked; the decoders: 128 causal or masked).
const VARIANTS: [(bool, usize, u8); 6] = [
    (true, 64, 0),
    (false, 64, 0),
    (true, 128, 1),
    (false, 64, 1),
    (true, 128, 2),
    (false, 128, 2),
];

fn compiler() -> Option<String> {
    let asked = std::env::var("CXX").ok();
    asked
        .into_iter()
        .chain(["c++", "g++", "clang++"].map(String::from))
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn build_and_run(
    cxx: &str,
    harness: &Path,
    dir: &Path,
    (bf16, d, mode): (bool, usize, u8),
) -> Result<String, String> {
    let exe = dir.join(format!("mma_emu_{}_{d}_{mode}", u8::from(bf16)));
    let built = Command::new(cxx)
        .args(["-std=c++20", "-O2"])
        .arg(format!("-DMMA_BF16={}", u8::from(bf16)))
        .arg(format!("-DHEAD_DIM={d}"))
        .arg(format!("-DMASK_MODE={mode}"))
        .arg(harness)
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("running {cxx}: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "{cxx} could not build the harness for {:?}:\n{}",
            (bf16, d, mode),
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    let ran = Command::new(&exe)
        .output()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    if ran.status.success() && out.lines().filter(|l| l.starts_with("ok")).count() == 4 {
        Ok(out)
    } else {
        Err(format!(
            "the emulated kernel failed for {:?}:\n{out}",
            (bf16, d, mode)
        ))
    }
}

#[test]
fn mma_attention_kernel_matches_f64_attention_when_emulated() {
    let Some(cxx) = compiler() else {
        eprintln!(
            "no C++ compiler (c++, g++, clang++ or $CXX): the emulated mma attention kernel is not checked"
        );
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let harness = root.join("emulate/mma_attention_emu.cpp");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Two at a time: each is one compiler process, then one single-threaded run.
    let results: Vec<Result<String, String>> = VARIANTS
        .chunks(2)
        .flat_map(|pair| {
            std::thread::scope(|scope| {
                let handles: Vec<_> = pair
                    .iter()
                    .map(|&v| {
                        let (cxx, harness, dir) = (&cxx, &harness, &dir);
                        scope.spawn(move || build_and_run(cxx, harness, dir, v))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("a harness thread panicked".into()))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(out) => eprint!("{out}"),
            Err(e) => failed.push(e),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

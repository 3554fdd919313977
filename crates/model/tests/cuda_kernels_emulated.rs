//! Our CUDA C++ kernels run on the CPU: the mma attention (`src/fused/mma_attention.cu`,
//! `MMREASON_ATTENTION=mma`) and the few-row product (`src/fused/gemv.cu`, `MMREASON_GEMV=cuda`). The harnesses
//! in `emulate/` include each kernel's own source, emulate its device operations (`emulate/emu.h`: mma.sync in
//! the PTX ISA's fragment layouts, ldmatrix, shuffles, cp.async landing only when waited for, barriers, warps
//! scheduled in a random order, every lane of a warp required at each warp-level operation) and compare the output with f64 — for attention: grouped heads, lengths that
//! are not whole tiles, a cache longer than the keys read (NaN past them), a permuted query layout, a cached
//! prefix, left padding with rows masked throughout, and a sliding window; for the product: 1–4 rows, partial
//! cubes and load stretches, padded rows. This is the only check of their logic on a machine without a GPU; it
//! needs a C++20 compiler (`c++`, as Rust's linker set-up usually brings).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The harnesses and their variants: (harness, bf16, the -D definitions besides MMA_BF16, passing lines
/// expected). Attention: every mask mode (0 none, 1 causal, 2 additive mask) at both head sizes, each dtype at
/// least three times, as the model paths use them (CLIP: 64 unmasked; the decoders: 128 causal or masked), and
/// cubes of 8 warps, two stages of tiles at heads of 64, two m-tiles per warp (at heads of 128 with key
/// blocks of 32), the projections' biases folded in, and the lean block loop.
/// The product: bf16 and f16, 8 loads in flight (the default) and 3.
const VARIANTS: [(&str, bool, &str, usize); 27] = [
    ("mma_attention_emu.cpp", true, "-DHEAD_DIM=64 -DMASK_MODE=0", 9),
    ("mma_attention_emu.cpp", false, "-DHEAD_DIM=128 -DMASK_MODE=0", 9),
    ("mma_attention_emu.cpp", true, "-DHEAD_DIM=128 -DMASK_MODE=1", 9),
    ("mma_attention_emu.cpp", false, "-DHEAD_DIM=64 -DMASK_MODE=1", 9),
    ("mma_attention_emu.cpp", true, "-DHEAD_DIM=64 -DMASK_MODE=2", 9),
    ("mma_attention_emu.cpp", false, "-DHEAD_DIM=128 -DMASK_MODE=2", 9),
    // Cubes of 8 warps (`MMREASON_MMA_WARPS=8`): Q's 128 rows staged across both tiles.
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=128 -DMASK_MODE=1 -DWARPS=8",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        false,
        "-DHEAD_DIM=64 -DMASK_MODE=2 -DWARPS=8",
        9,
    ),
    // Two stages of K and V tiles (`MMREASON_MMA_STAGES=2`, heads of 64): block j + 2's copies in flight
    // while block j is worked on (CLIP's 577 keys make 10 blocks).
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=64 -DMASK_MODE=0 -DSTAGES=2",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        false,
        "-DHEAD_DIM=64 -DMASK_MODE=2 -DSTAGES=2",
        9,
    ),
    // Two m-tiles of 16 query rows per warp (`MMREASON_MMA_ROWS=32`, heads of 64): each K/V fragment serves both.
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=64 -DMASK_MODE=0 -DMTILES=2",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        false,
        "-DHEAD_DIM=64 -DMASK_MODE=1 -DMTILES=2",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=64 -DMASK_MODE=2 -DMTILES=2 -DSTAGES=2",
        9,
    ),
    // At heads of 128 with key blocks of 32 (what `MMREASON_MMA_ROWS=32` compiles there).
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=128 -DMASK_MODE=1 -DMTILES=2 -DBC=32",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        false,
        "-DHEAD_DIM=128 -DMASK_MODE=2 -DMTILES=2 -DBC=32",
        9,
    ),
    // The query and value biases folded in (`MMREASON_QKV_VIEWS=1`, the vision tower: unmasked heads of 64),
    // against a reference that adds all three biases.
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=64 -DMASK_MODE=0 -DQV_BIAS=1",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        false,
        "-DHEAD_DIM=64 -DMASK_MODE=0 -DQV_BIAS=1 -DMTILES=2",
        9,
    ),
    // The lean block loop (`MMREASON_MMA_LEAN=1`): key blocks every row of a warp sees whole run without
    // conditions, the scale folded into the exponentials' FMA, tiles copied in a fixed count per thread.
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=64 -DMASK_MODE=0 -DLEAN=1",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=128 -DMASK_MODE=1 -DLEAN=1",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        false,
        "-DHEAD_DIM=128 -DMASK_MODE=2 -DLEAN=1",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        false,
        "-DHEAD_DIM=64 -DMASK_MODE=1 -DMTILES=2 -DLEAN=1",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=64 -DMASK_MODE=0 -DQV_BIAS=1 -DLEAN=1",
        9,
    ),
    (
        "mma_attention_emu.cpp",
        true,
        "-DHEAD_DIM=64 -DMASK_MODE=2 -DSTAGES=2 -DLEAN=1",
        9,
    ),
    ("gemv_emu.cpp", true, "-DUNROLL=8", 4),
    ("gemv_emu.cpp", false, "-DUNROLL=8", 4),
    ("gemv_emu.cpp", true, "-DUNROLL=3", 4),
    ("gemv_emu.cpp", false, "-DUNROLL=1", 4),
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
    dir: &Path,
    (harness, bf16, defines, lines): (&str, bool, &str, usize),
) -> Result<String, String> {
    let what = format!("{harness} bf16={bf16} {defines}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("emulate");
    let exe = dir.join(format!(
        "emu_{}_{}_{}",
        harness.trim_end_matches(".cpp"),
        u8::from(bf16),
        defines.replace([' ', '-', '='], "")
    ));
    let built = Command::new(cxx)
        .args(["-std=c++20", "-O2", "-fno-strict-aliasing"])
        .arg(format!("-DMMA_BF16={}", u8::from(bf16)))
        .args(defines.split_whitespace())
        .arg(root.join(harness))
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("running {cxx}: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "{cxx} could not build {what}:\n{}",
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
    if ran.status.success() && out.lines().filter(|l| l.starts_with("ok")).count() == lines {
        Ok(out)
    } else {
        Err(format!(
            "the emulated kernel failed for {what} ({}):\n{out}",
            ran.status
        ))
    }
}

#[test]
fn cuda_kernels_match_f64_when_emulated() {
    let Some(cxx) = compiler() else {
        eprintln!(
            "no C++ compiler (c++, g++, clang++ or $CXX): the emulated mma attention kernel is not checked"
        );
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Two at a time: each is one compiler process, then one single-threaded run.
    let results: Vec<Result<String, String>> = VARIANTS
        .chunks(2)
        .flat_map(|pair| {
            std::thread::scope(|scope| {
                let handles: Vec<_> = pair
                    .iter()
                    .map(|&v| {
                        let (cxx, dir) = (&cxx, &dir);
                        scope.spawn(move || build_and_run(cxx, dir, v))
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

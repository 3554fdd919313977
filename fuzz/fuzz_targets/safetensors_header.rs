//! Fuzzes the safetensors header parser with whole files: it must never panic, and whatever it accepts must
//! satisfy the invariants every reader relies on (offsets in bounds, sizes consistent, no overlap).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mmreason_checkpoint::parse_header;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = parse_header(Path::new("fuzz.safetensors"), data, data.len() as u64) else {
        return;
    };
    let data_len = data.len() as u64 - header.data_start();
    let mut last_end = 0u64;
    for t in &header.tensors {
        assert!(t.begin <= t.end && t.end <= data_len, "{t:?} outside {data_len}");
        let bytes: u128 = t.shape.iter().map(|&d| d as u128).product::<u128>() * t.dtype.size() as u128;
        assert_eq!(bytes, (t.end - t.begin) as u128, "{t:?}");
        if t.begin < t.end {
            assert!(t.begin >= last_end, "overlap at {t:?}");
            last_end = t.end;
        }
    }
});

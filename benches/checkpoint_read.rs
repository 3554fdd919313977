//! Reading speed of the checkpoint crate against the reference `safetensors` crate on the same file, measured
//! in the same run (ratios, not absolute times, are what to compare on a noisy machine).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mmreason::checkpoint::{Dtype, Weights};

fn bench(c: &mut Criterion) {
    let dir = mmreason::bundled_fixtures().join("models/llava-next");
    let weights = Weights::open_dir(&dir).expect("bundled fixture");
    let mut g = c.benchmark_group("read_all_to_f32");
    g.throughput(Throughput::Bytes(weights.total_bytes()));
    g.bench_function("mmreason (mmap, bf16->f32)", |b| {
        b.iter(|| {
            let w = Weights::open_dir(&dir).unwrap();
            let mut buf = Vec::new();
            for t in w.tensors() {
                buf.clear();
                t.extend_f32(&mut buf).unwrap();
                std::hint::black_box(&buf);
            }
        })
    });
    g.bench_function("safetensors crate (read file, bf16->f32)", |b| {
        b.iter(|| {
            let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut buf = Vec::new();
            for (_, v) in st.tensors() {
                buf.clear();
                let dtype = Dtype::parse(&format!("{:?}", v.dtype())).expect("fixture dtypes are standard");
                assert!(mmreason::checkpoint::dtype::convert_to_f32(
                    dtype,
                    v.data(),
                    &mut buf
                ));
                std::hint::black_box(&buf);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

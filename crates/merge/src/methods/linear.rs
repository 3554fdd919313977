//! `linear` (model soup): Σ wᵢ·xᵢ, divided by Σ wᵢ when `normalize` (default true), in f32 as mergekit.

pub fn merge(models: &[(&[f32], f64)], normalize: bool) -> Vec<f32> {
    let n = models.first().map_or(0, |(v, _)| v.len());
    let wsum: f32 = models.iter().map(|(_, w)| *w as f32).sum();
    (0..n)
        .map(|i| {
            let s: f32 = models.iter().map(|(v, w)| *w as f32 * v[i]).sum();
            if normalize { s / wsum } else { s }
        })
        .collect()
}

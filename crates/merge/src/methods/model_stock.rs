//! `model_stock` (Jang et al. 2024): interpolate between the base and the average of the fine-tuned models
//! with t = N·cosθ / (1 + (N−1)·cosθ), cosθ the mean pairwise cosine of the models' offsets from the base —
//! over the whole tensor, or per row with `filter_wise` (mergekit's definitions, including the 1e-6 clamp).

pub fn merge(base: &[f32], ws: &[&[f32]], shape: &[usize], filter_wise: bool) -> Vec<f32> {
    let row = if filter_wise && shape.len() >= 2 {
        *shape.last().expect("rank ≥ 2")
    } else {
        base.len()
    };
    let n = ws.len();
    let mut out = Vec::with_capacity(base.len());
    for (r, b) in base.chunks(row.max(1)).enumerate() {
        let span = r * row..r * row + b.len();
        let offsets: Vec<Vec<f32>> = ws
            .iter()
            .map(|w| w[span.clone()].iter().zip(b).map(|(x, y)| x - y).collect())
            .collect();
        let mut cos = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                let (a, c) = (&offsets[i], &offsets[j]);
                let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let nc = c.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let dot: f64 = a.iter().zip(c).map(|(x, y)| *x as f64 * *y as f64).sum();
                cos.push((dot / (na * nc).max(1e-6)).clamp(-1.0, 1.0) as f32);
            }
        }
        let cos_theta = cos.iter().sum::<f32>() / cos.len() as f32;
        let nf = n as f32;
        let t = (nf * cos_theta) / (1.0 + (nf - 1.0) * cos_theta);
        for (k, &b0) in b.iter().enumerate() {
            let avg = ws.iter().fold(0.0f32, |s, w| s + w[span.start + k]) / nf;
            out.push(t * avg + (1.0 - t) * b0);
        }
    }
    out
}

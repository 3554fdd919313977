//! `slerp`: spherical interpolation of the whole tensor from the base model (t = 0) to the other (t = 1),
//! falling back to linear interpolation when the two are nearly colinear (|cos| > 0.9995), as mergekit does.
//! Norms and the dot product accumulate in f64; the final combination is in f32.

pub fn merge(t: f64, v0: &[f32], v1: &[f32]) -> Vec<f32> {
    const DOT_THRESHOLD: f64 = 0.9995;
    const EPS: f64 = 1e-8;
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
    let (n0, n1) = (norm(v0), norm(v1));
    let (n0, n1) = (if n0 > EPS { n0 } else { 1.0 }, if n1 > EPS { n1 } else { 1.0 });
    let dot: f64 = v0
        .iter()
        .zip(v1)
        .map(|(&a, &b)| (a as f64 / n0) * (b as f64 / n1))
        .sum();
    let (s0, s1) = if dot.abs() > DOT_THRESHOLD {
        (1.0 - t, t)
    } else {
        let theta0 = dot.acos();
        let sin0 = theta0.sin();
        let theta_t = theta0 * t;
        ((theta0 - theta_t).sin() / sin0, theta_t.sin() / sin0)
    };
    let (s0, s1) = (s0 as f32, s1 as f32);
    v0.iter().zip(v1).map(|(&a, &b)| s0 * a + s1 * b).collect()
}

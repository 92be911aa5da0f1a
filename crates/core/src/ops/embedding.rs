//! Token + position embedding: out[b, t] = wte[token[b, t]] + wpe[t].

/// Forward. tokens (B, T), wte (V, C), wpe (n_ctx, C) -> out (B, T, C).
/// Panics with the offending id if a token is outside the vocabulary: the
/// data pipeline validates ids, so one here is a programming error.
pub fn embedding_forward(
    out: &mut [f32],
    tokens: &[u32],
    wte: &[f32],
    wpe: &[f32],
    t_len: usize,
    c: usize,
) {
    let vocab = wte.len() / c;
    for (n, (&tok, row)) in tokens.iter().zip(out.chunks_exact_mut(c)).enumerate() {
        let tok = tok as usize;
        assert!(
            tok < vocab,
            "token id {tok} is outside the vocabulary of {vocab}"
        );
        let t = n % t_len;
        let te = &wte[tok * c..(tok + 1) * c];
        let pe = &wpe[t * c..(t + 1) * c];
        for ((o, &a), &b) in row.iter_mut().zip(te).zip(pe) {
            *o = a + b;
        }
    }
}

/// Backward. dout (B, T, C): dwte[token] += dout, dwpe[t] += dout.
pub fn embedding_backward(
    dwte: &mut [f32],
    dwpe: &mut [f32],
    dout: &[f32],
    tokens: &[u32],
    t_len: usize,
    c: usize,
) {
    for (n, (&tok, g)) in tokens.iter().zip(dout.chunks_exact(c)).enumerate() {
        let tok = tok as usize;
        let t = n % t_len;
        for (d, &x) in dwte[tok * c..(tok + 1) * c].iter_mut().zip(g) {
            *d += x;
        }
        for (d, &x) in dwpe[t * c..(t + 1) * c].iter_mut().zip(g) {
            *d += x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fd;

    #[test]
    fn backward_matches_finite_differences() {
        let (v, n_ctx, t_len, c) = (5, 4, 3, 2);
        // Token 1 appears twice so its gradient must sum both uses.
        let tokens = [1u32, 4, 1, 0, 2, 3];
        let wte = fd::random(v * c, 1);
        let wpe = fd::random(n_ctx * c, 2);
        let g = fd::random(tokens.len() * c, 3);
        let mut dwte = vec![0.0; v * c];
        let mut dwpe = vec![0.0; n_ctx * c];
        embedding_backward(&mut dwte, &mut dwpe, &g, &tokens, t_len, c);
        let mut out = vec![0.0; tokens.len() * c];
        fd::check("dwte", &wte, &dwte, 1e-3, &mut |p| {
            embedding_forward(&mut out, &tokens, p, &wpe, t_len, c);
            fd::dot(&out, &g)
        });
        fd::check("dwpe", &wpe, &dwpe, 1e-3, &mut |p| {
            embedding_forward(&mut out, &tokens, &wte, p, t_len, c);
            fd::dot(&out, &g)
        });
    }

    #[test]
    #[should_panic(expected = "outside the vocabulary")]
    fn bad_token_id_is_named() {
        let mut out = vec![0.0; 2];
        embedding_forward(&mut out, &[7], &[0.0; 6], &[0.0; 2], 1, 2);
    }
}

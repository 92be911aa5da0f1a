//! One flat parameter buffer with named views.
//!
//! Every tensor lives at a fixed offset of one `Vec<f32>`; gradients and the
//! AdamW moments use the same layout, so the gradient reduction, the
//! optimizer and checkpointing are each one loop over one slice.
//!
//! Names are GPT-2's. Matrices are stored (out_features, in_features),
//! row-major, as `torch.nn.Linear` does; GPT-2's `Conv1D` stores
//! (in, out), so export transposes `c_attn`, `c_proj` and `c_fc`.

use super::config::ModelConfig;
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// GPT-2 name, e.g. `h.0.attn.c_attn.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Weight decay applies to matrices (embeddings and linear weights) only,
    /// never to biases or LayerNorm parameters.
    pub decay: bool,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Offsets of one layer's tensors inside the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerOffsets {
    pub ln_1_weight: usize,
    pub ln_1_bias: usize,
    /// (3C, C): rows [0, C) make queries, [C, 2C) keys, [2C, 3C) values.
    pub c_attn_weight: usize,
    pub c_attn_bias: usize,
    /// (C, C)
    pub attn_proj_weight: usize,
    pub attn_proj_bias: usize,
    pub ln_2_weight: usize,
    pub ln_2_bias: usize,
    /// (n_inner, C)
    pub c_fc_weight: usize,
    pub c_fc_bias: usize,
    /// (C, n_inner)
    pub mlp_proj_weight: usize,
    pub mlp_proj_bias: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamLayout {
    pub specs: Vec<ParamSpec>,
    /// (V, C): token embedding, also the tied output head.
    pub wte: usize,
    /// (n_ctx, C)
    pub wpe: usize,
    pub layers: Vec<LayerOffsets>,
    pub ln_f_weight: usize,
    pub ln_f_bias: usize,
    pub total: usize,
}

impl ParamLayout {
    pub fn new(cfg: &ModelConfig) -> ParamLayout {
        let c = cfg.n_embd;
        let mut specs = Vec::new();
        let mut offset = 0;
        let mut push = |name: String, shape: Vec<usize>, decay: bool| -> usize {
            let spec = ParamSpec {
                name,
                shape,
                offset,
                decay,
            };
            offset += spec.len();
            let at = spec.offset;
            specs.push(spec);
            at
        };
        let wte = push("wte.weight".into(), vec![cfg.vocab_size, c], true);
        let wpe = push("wpe.weight".into(), vec![cfg.n_ctx, c], true);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = |s: &str| format!("h.{i}.{s}");
            layers.push(LayerOffsets {
                ln_1_weight: push(p("ln_1.weight"), vec![c], false),
                ln_1_bias: push(p("ln_1.bias"), vec![c], false),
                c_attn_weight: push(p("attn.c_attn.weight"), vec![3 * c, c], true),
                c_attn_bias: push(p("attn.c_attn.bias"), vec![3 * c], false),
                attn_proj_weight: push(p("attn.c_proj.weight"), vec![c, c], true),
                attn_proj_bias: push(p("attn.c_proj.bias"), vec![c], false),
                ln_2_weight: push(p("ln_2.weight"), vec![c], false),
                ln_2_bias: push(p("ln_2.bias"), vec![c], false),
                c_fc_weight: push(p("mlp.c_fc.weight"), vec![cfg.n_inner, c], true),
                c_fc_bias: push(p("mlp.c_fc.bias"), vec![cfg.n_inner], false),
                mlp_proj_weight: push(p("mlp.c_proj.weight"), vec![c, cfg.n_inner], true),
                mlp_proj_bias: push(p("mlp.c_proj.bias"), vec![c], false),
            });
        }
        let ln_f_weight = push("ln_f.weight".into(), vec![c], false);
        let ln_f_bias = push("ln_f.bias".into(), vec![c], false);
        ParamLayout {
            specs,
            wte,
            wpe,
            layers,
            ln_f_weight,
            ln_f_bias,
            total: offset,
        }
    }

    pub fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// A 0/1 mask over the flat buffer: 1 where weight decay applies.
    pub fn decay_ranges(&self) -> Vec<std::ops::Range<usize>> {
        self.specs
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.range())
            .collect()
    }

    /// GPT-2 initialisation, seeded: weights ~ N(0, 0.02), residual
    /// projections (`attn.c_proj`, `mlp.c_proj`) ~ N(0, 0.02 / sqrt(2 L)),
    /// biases 0, LayerNorm weight 1 and bias 0.
    pub fn init(&self, cfg: &ModelConfig, seed: u64) -> Vec<f32> {
        let mut params = vec![0.0f32; self.total];
        let mut rng = Rng::new(seed);
        let residual_std = 0.02 / (2.0 * cfg.n_layer as f32).sqrt();
        for spec in &self.specs {
            let slice = &mut params[spec.range()];
            let name = spec.name.as_str();
            if name.ends_with("ln_1.weight")
                || name.ends_with("ln_2.weight")
                || name == "ln_f.weight"
            {
                slice.fill(1.0);
            } else if spec.decay {
                let std = if name.ends_with("c_proj.weight") {
                    residual_std
                } else {
                    0.02
                };
                for x in slice.iter_mut() {
                    *x = rng.normal() * std;
                }
            }
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_covers_buffer_exactly_with_gpt2_names() {
        let cfg = ModelConfig::preset("tiny").unwrap();
        let layout = ParamLayout::new(&cfg);
        assert_eq!(layout.total, cfg.num_params());
        let mut end = 0;
        for s in &layout.specs {
            assert_eq!(s.offset, end, "{} not contiguous", s.name);
            end += s.len();
        }
        assert_eq!(end, layout.total);
        for name in [
            "wte.weight",
            "wpe.weight",
            "h.0.ln_1.weight",
            "h.1.attn.c_attn.weight",
            "h.1.attn.c_proj.bias",
            "h.0.mlp.c_fc.weight",
            "ln_f.bias",
        ] {
            assert!(layout.get(name).is_some(), "missing {name}");
        }
        assert_eq!(
            layout.get("h.1.attn.c_attn.weight").unwrap().offset,
            layout.layers[1].c_attn_weight
        );
    }

    #[test]
    fn init_is_seeded_and_scaled() {
        let cfg = ModelConfig::preset("baby").unwrap();
        let layout = ParamLayout::new(&cfg);
        let a = layout.init(&cfg, 1);
        assert_eq!(a, layout.init(&cfg, 1));
        assert_ne!(a, layout.init(&cfg, 2));
        let std_of = |name: &str| {
            let s = &a[layout.get(name).unwrap().range()];
            (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt()
        };
        assert!((std_of("wte.weight") - 0.02).abs() < 0.001);
        let want = 0.02 / (8.0f32).sqrt();
        assert!((std_of("h.0.mlp.c_proj.weight") - want).abs() < 0.001);
        assert!(
            a[layout.get("h.2.ln_2.weight").unwrap().range()]
                .iter()
                .all(|&x| x == 1.0)
        );
        assert!(
            a[layout.get("h.2.attn.c_attn.bias").unwrap().range()]
                .iter()
                .all(|&x| x == 0.0)
        );
    }
}

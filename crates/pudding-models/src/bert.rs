//! A BERT-family encoder (BertModel: post-norm transformer, learned positions, GELU)
//! loaded from Hugging Face safetensors, with mean pooling: the router's prompt encoder
//! (all-MiniLM-L6-v2 by default; any BertModel checkpoint loads).
//!
//! Shapes: `b` batch, `s` tokens, `d` hidden, `h` heads, `e = d / h`.

use crate::lm::host_values;
use crate::tokenizer::TextTokenizer;
use crate::weights::{SafetensorsWeights, WeightSource};
use crate::ModelError;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Hyper-parameters of a BERT encoder (from HF `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Hidden size (d).
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (h).
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Learned positions (the longest input).
    pub max_position_embeddings: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Token-type vocabulary (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation; only `gelu` (exact, erf form) is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// A dense layer `y = x W + b`.
#[derive(Module, Debug)]
struct Dense<B: Backend> {
    /// `[in, out]`.
    weight: Param<Tensor<B, 2>>,
    /// `[out]`.
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
    /// `[in, out]` weight and `[out]` bias as parameters.
    fn new(weight: Tensor<B, 2>, bias: Tensor<B, 1>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
        }
    }

    /// `x`: `[b, s, in]` -> `[b, s, out]`.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d] = x.dims();
        let weight = self.weight.val();
        let out = weight.dims()[1];
        x.reshape([b * s, d]).matmul(weight).reshape([b, s, out]) + self.bias.val().unsqueeze::<3>()
    }
}

/// Layer norm over the last axis with learned scale `gamma` and shift `beta` (`[d]`).
#[derive(Module, Debug)]
struct LayerNorm<B: Backend> {
    gamma: Param<Tensor<B, 1>>,
    beta: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// `x`: `[b, s, d]` -> `[b, s, d]`.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mean = x.clone().mean_dim(2);
        let centered = x - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(2);
        centered / var.add_scalar(self.eps).sqrt() * self.gamma.val().unsqueeze::<3>()
            + self.beta.val().unsqueeze::<3>()
    }
}

/// One post-norm encoder layer.
#[derive(Module, Debug)]
struct Layer<B: Backend> {
    /// The query, key and value projections as one (weight `[d, 3d]`, bias `[3d]`, in that
    /// order along the outputs): one matmul instead of three, wide enough for the CPU
    /// backend to use every core on short prompts. Trained as one parameter; written back
    /// as HF's three (see [`BertEncoder::params`]).
    qkv: Dense<B>,
    attn_out: Dense<B>,
    attn_norm: LayerNorm<B>,
    intermediate: Dense<B>,
    output: Dense<B>,
    out_norm: LayerNorm<B>,
}

/// One parameter of the encoder, by rank.
#[derive(Clone, Debug)]
pub enum BertParam<B: Backend> {
    /// A matrix (embedding table `[rows, d]` or dense weight `[in, out]`).
    Matrix(Tensor<B, 2>),
    /// A vector (bias, LayerNorm weight or bias).
    Vector(Tensor<B, 1>),
}

/// Exact (erf-form) GELU, `x * (1 + erf(x / sqrt 2)) / 2`, with erf from Abramowitz &
/// Stegun 7.1.26 (absolute error below 1.5e-7, under f32's resolution of the result).
/// Written in element-wise tensor ops because the CPU backend evaluates its own `gelu`
/// with a scalar `erf` per element, which took a quarter of the router's latency.
///
/// Element-wise: the result has the shape of `x`, of any rank.
pub fn gelu_erf<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const P: f64 = 0.327_591_1;
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let z = x.clone().mul_scalar(std::f64::consts::FRAC_1_SQRT_2);
    let a = z.clone().abs();
    let t = a.clone().mul_scalar(P).add_scalar(1.0).recip();
    let mut poly = t.clone().mul_scalar(A[4]);
    for c in A[..4].iter().rev() {
        poly = (poly.add_scalar(*c)) * t.clone();
    }
    let e = (z.clone() * z.clone()).neg().exp();
    let erf_abs = (poly * e).neg().add_scalar(1.0);
    let erf = erf_abs * z.sign();
    x * erf.add_scalar(1.0).mul_scalar(0.5)
}

/// Concatenates the query, key and value projections (`[in, out]` weights, `[out]` biases)
/// along their outputs.
fn fuse_qkv<B: Backend>(parts: [(Tensor<B, 2>, Tensor<B, 1>); 3]) -> Dense<B> {
    // Concatenate the `[out, in]` storage (the transposes of the `[in, out]` views) so the
    // fused weight keeps the same memory layout as the separate ones.
    let [q, k, v] = parts;
    Dense::new(
        Tensor::cat(vec![q.0.transpose(), k.0.transpose(), v.0.transpose()], 0).transpose(),
        Tensor::cat(vec![q.1, k.1, v.1], 0),
    )
}

/// The BERT encoder with its tokenizer: a Burn [`Module`], so optimisers, record
/// loading and device moves work on it as on any Burn model (the router's full
/// fine-tuning trains it with burn's AdamW).
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    #[module(skip)]
    config: BertConfig,
    /// Token embeddings `[vocab, d]`.
    word: Param<Tensor<B, 2>>,
    /// Position embeddings `[max_positions, d]`.
    position: Param<Tensor<B, 2>>,
    /// Token-type embeddings `[types, d]` (only type 0 is used).
    token_type: Param<Tensor<B, 2>>,
    embed_norm: LayerNorm<B>,
    layers: Vec<Layer<B>>,
    #[module(skip)]
    tokenizer: TextTokenizer,
}

impl<B: Backend> BertEncoder<B> {
    /// Loads `config.json`, `*.safetensors` and `tokenizer.json` from a directory (tensor
    /// names with or without the `bert.` prefix).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| ModelError::Io {
            path: config_path,
            source,
        })?;
        let config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("BERT config.json: {e}")))?;
        if config.hidden_act != "gelu" {
            return Err(ModelError::Config(format!(
                "hidden_act {:?} is not supported (gelu)",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(ModelError::Config(format!(
                "hidden size {} is not divisible into {} heads",
                config.hidden_size, config.num_attention_heads
            )));
        }
        if config.max_position_embeddings < 2 || config.type_vocab_size == 0 {
            return Err(ModelError::Config(format!(
                "a BERT encoder needs at least 2 positions and 1 token type (config: {} and {})",
                config.max_position_embeddings, config.type_vocab_size
            )));
        }
        let weights = SafetensorsWeights::open_dir(dir)?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(ModelError::Config(format!(
                "the tokenizer has {} tokens but the encoder embeds only {}: tokenizer.json and \
                 the weights belong to different models",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        Self::from_weights(config, &weights, tokenizer, device)
    }

    fn from_weights(
        config: BertConfig,
        weights: &SafetensorsWeights,
        tokenizer: TextTokenizer,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let prefix = if weights.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
            let full = format!("{prefix}{name}");
            let t = weights.tensor(&full)?;
            if t.shape != shape {
                return Err(ModelError::ShapeMismatch {
                    name: full,
                    expected: shape.to_vec(),
                    actual: t.shape,
                });
            }
            Ok(t.data)
        };
        let d = config.hidden_size;
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Tensor<B, 2>, ModelError> {
            Ok(Tensor::from_data(
                TensorData::new(get(name, &[rows, cols])?, [rows, cols]),
                device,
            ))
        };
        let vector = |name: &str, n: usize| -> Result<Tensor<B, 1>, ModelError> {
            Ok(Tensor::from_data(
                TensorData::new(get(name, &[n])?, [n]),
                device,
            ))
        };
        // HF Linear weights are [out, in]; stored transposed for x @ W.
        let parts = |name: &str, out: usize, inp: usize| {
            Ok::<_, ModelError>((
                matrix(&format!("{name}.weight"), out, inp)?.transpose(),
                vector(&format!("{name}.bias"), out)?,
            ))
        };
        let dense = |name: &str, out: usize, inp: usize| -> Result<Dense<B>, ModelError> {
            let (weight, bias) = parts(name, out, inp)?;
            Ok(Dense::new(weight, bias))
        };
        let norm = |name: &str| -> Result<LayerNorm<B>, ModelError> {
            Ok(LayerNorm {
                gamma: Param::from_tensor(vector(&format!("{name}.weight"), d)?),
                beta: Param::from_tensor(vector(&format!("{name}.bias"), d)?),
                eps: config.layer_norm_eps,
            })
        };
        let ffn = config.intermediate_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = |s: &str| format!("encoder.layer.{i}.{s}");
                Ok(Layer {
                    qkv: fuse_qkv([
                        parts(&p("attention.self.query"), d, d)?,
                        parts(&p("attention.self.key"), d, d)?,
                        parts(&p("attention.self.value"), d, d)?,
                    ]),
                    attn_out: dense(&p("attention.output.dense"), d, d)?,
                    attn_norm: norm(&p("attention.output.LayerNorm"))?,
                    intermediate: dense(&p("intermediate.dense"), ffn, d)?,
                    output: dense(&p("output.dense"), d, ffn)?,
                    out_norm: norm(&p("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Self {
            word: Param::from_tensor(matrix(
                "embeddings.word_embeddings.weight",
                config.vocab_size,
                d,
            )?),
            position: Param::from_tensor(matrix(
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings,
                d,
            )?),
            token_type: Param::from_tensor(matrix(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size,
                d,
            )?),
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
            tokenizer,
            config,
        })
    }

    /// Every parameter as `(HF name without the "bert." prefix, tensor)` in HF's order.
    /// Dense weights are in this crate's `[in, out]` layout (the transpose of HF's); the
    /// fused query/key/value projection is given as HF's three (`[d, d]` slices of it).
    /// The tensors share the encoder's (the same autodiff nodes).
    pub fn params(&self) -> Vec<(String, BertParam<B>)> {
        let mut out = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                BertParam::Matrix(self.word.val()),
            ),
            (
                "embeddings.position_embeddings.weight".to_string(),
                BertParam::Matrix(self.position.val()),
            ),
            (
                "embeddings.token_type_embeddings.weight".to_string(),
                BertParam::Matrix(self.token_type.val()),
            ),
        ];
        let norm = |out: &mut Vec<(String, BertParam<B>)>, name: &str, n: &LayerNorm<B>| {
            out.push((format!("{name}.weight"), BertParam::Vector(n.gamma.val())));
            out.push((format!("{name}.bias"), BertParam::Vector(n.beta.val())));
        };
        let dense = |out: &mut Vec<(String, BertParam<B>)>,
                     name: &str,
                     weight: Tensor<B, 2>,
                     bias: Tensor<B, 1>| {
            out.push((format!("{name}.weight"), BertParam::Matrix(weight)));
            out.push((format!("{name}.bias"), BertParam::Vector(bias)));
        };
        norm(&mut out, "embeddings.LayerNorm", &self.embed_norm);
        let d = self.config.hidden_size;
        for (i, l) in self.layers.iter().enumerate() {
            let p = |s: &str| format!("encoder.layer.{i}.{s}");
            for (part, name) in ["query", "key", "value"].into_iter().enumerate() {
                dense(
                    &mut out,
                    &p(&format!("attention.self.{name}")),
                    l.qkv.weight.val().narrow(1, part * d, d),
                    l.qkv.bias.val().narrow(0, part * d, d),
                );
            }
            let whole = |out: &mut Vec<_>, name: &str, layer: &Dense<B>| {
                dense(out, &p(name), layer.weight.val(), layer.bias.val())
            };
            whole(&mut out, "attention.output.dense", &l.attn_out);
            norm(&mut out, &p("attention.output.LayerNorm"), &l.attn_norm);
            whole(&mut out, "intermediate.dense", &l.intermediate);
            whole(&mut out, "output.dense", &l.output);
            norm(&mut out, &p("output.LayerNorm"), &l.out_norm);
        }
        out
    }

    /// Writes the encoder as a Hugging Face directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors` in HF layout, f32) that [`Self::load`] reads back.
    pub fn save_dir(&self, dir: &Path) -> Result<(), ModelError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModelError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, p) in self.params() {
            let (shape, values) = match p {
                BertParam::Matrix(t) => {
                    let is_dense = !name.starts_with("embeddings.");
                    let t = if is_dense { t.transpose() } else { t };
                    (t.dims().to_vec(), host_values(t)?)
                }
                BertParam::Vector(t) => (t.dims().to_vec(), host_values(t)?),
            };
            tensors.push((
                name,
                shape,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
        let views = tensors
            .iter()
            .map(|(n, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|v| (n.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Safetensors {
                path: dir.join("model.safetensors"),
                reason: e.to_string(),
            })?;
        let bytes = safetensors::serialize(views, None).map_err(|e| ModelError::Safetensors {
            path: dir.join("model.safetensors"),
            reason: e.to_string(),
        })?;
        let write = |name: &str, data: &[u8]| {
            pudding_core::io::write_atomic(&dir.join(name), data).map_err(ModelError::from)
        };
        write("model.safetensors", &bytes)?;
        write(
            "config.json",
            serde_json::to_string_pretty(&self.config)
                .map_err(|e| ModelError::Config(e.to_string()))?
                .as_bytes(),
        )?;
        self.tokenizer.save(&dir.join("tokenizer.json"))?;
        Ok(())
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Keeps only the first `n` encoder layers: a faster router encoder (its latency is
    /// about proportional to the layers kept); a head must be trained on the truncated
    /// encoder's own embeddings. Errors when `n` is 0 or more than the encoder has.
    pub fn truncate_layers(mut self, n: usize) -> Result<Self, ModelError> {
        if n == 0 || n > self.layers.len() {
            return Err(ModelError::Config(format!(
                "cannot keep {n} encoder layers: the encoder has {}",
                self.layers.len()
            )));
        }
        self.layers.truncate(n);
        self.config.num_hidden_layers = n;
        Ok(self)
    }

    /// Token ids with `[CLS]` / `[SEP]`, cut to `max_len` tokens (the final `[SEP]` kept).
    /// An error for a blank text (there is nothing to route on) or an id the embedding
    /// table lacks.
    pub fn tokenize(&self, text: &str, max_len: usize) -> Result<Vec<u32>, ModelError> {
        if text.trim().is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let mut ids = self.tokenizer.encode_with_special_tokens(text)?;
        if ids.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::TokenOutOfVocab { id, vocab });
        }
        let limit = max_len.min(self.config.max_position_embeddings).max(2);
        if ids.len() > limit {
            let sep = *ids.last().unwrap_or(&0);
            ids.truncate(limit - 1);
            ids.push(sep);
        }
        Ok(ids)
    }

    /// Final hidden states `[b, s, d]` for right-padded `ids` `[b, s]` with `mask` `[b, s]`
    /// (1 = real token, 0 = padding).
    pub fn forward(&self, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 3> {
        self.forward_masked(ids, Some(mask))
    }

    /// [`Self::forward`]; `mask = None` when no row has padding (skips the mask).
    fn forward_masked(&self, ids: Tensor<B, 2, Int>, mask: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let [b, s] = ids.dims();
        let d = self.config.hidden_size;
        let h = self.config.num_attention_heads;
        let e = d / h;
        let words = self
            .word
            .val()
            .select(0, ids.reshape([b * s]))
            .reshape([b, s, d]);
        let positions = self.position.val().narrow(0, 0, s).unsqueeze::<3>();
        let types = self.token_type.val().narrow(0, 0, 1).unsqueeze::<3>();
        let mut x = self.embed_norm.forward(words + positions + types);
        // Additive key mask [b, 1, 1, s]: 0 for tokens, -1e9 for padding.
        let key_mask = mask.map(|m| (m - 1.0).mul_scalar(1e9).reshape([b, 1, 1, s]));
        let scale = 1.0 / (e as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(x.clone()); // [b, s, 3d]
            let heads = |part: usize| {
                qkv.clone()
                    .narrow(2, part * d, d)
                    .reshape([b, s, h, e])
                    .swap_dims(1, 2)
            };
            let (q, k, v) = (heads(0), heads(1), heads(2));
            let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
            if let Some(key_mask) = &key_mask {
                scores = scores + key_mask.clone();
            }
            let ctx = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b, s, d]);
            x = layer.attn_norm.forward(x + layer.attn_out.forward(ctx));
            let inner = gelu_erf(layer.intermediate.forward(x.clone()));
            x = layer.out_norm.forward(x + layer.output.forward(inner));
        }
        x
    }

    /// Mean-pooled embeddings `[b, d]` of several texts (each cut to `max_len` tokens),
    /// padding excluded from the mean.
    pub fn embed(&self, texts: &[&str], max_len: usize) -> Result<Tensor<B, 2>, ModelError> {
        if texts.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let device = self.word.val().device();
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenize(t, max_len))
            .collect::<Result<_, _>>()?;
        let width = ids.iter().map(Vec::len).max().unwrap_or(1);
        let mut flat = Vec::with_capacity(ids.len() * width);
        let mut mask = Vec::with_capacity(ids.len() * width);
        for row in &ids {
            flat.extend(row.iter().map(|&t| t as i64));
            flat.extend(std::iter::repeat_n(0i64, width - row.len()));
            mask.extend(std::iter::repeat_n(1.0f32, row.len()));
            mask.extend(std::iter::repeat_n(0.0f32, width - row.len()));
        }
        let b = ids.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, width]), &device);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [b, width]), &device);
        let padded = ids.iter().any(|row| row.len() < width);
        let hidden = self.forward_masked(tokens, padded.then(|| mask.clone()));
        let m = mask.unsqueeze_dim::<3>(2); // [b, s, 1]
        let summed = (hidden * m.clone())
            .sum_dim(1)
            .reshape([b, self.config.hidden_size]);
        let counts = m.sum_dim(1).reshape([b, 1]);
        Ok(summed / counts)
    }

    /// One text's mean-pooled embedding on the host (`d` values).
    pub fn embed_one(&self, text: &str, max_len: usize) -> Result<Vec<f32>, ModelError> {
        host_values(self.embed(&[text], max_len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::gelu_erf;
    use crate::CpuBackend as B;
    use burn::prelude::*;

    /// `gelu_erf` against Python's `math.erf` (an independent implementation). Regenerate:
    /// `python3 -c "import math; print([0.5*x*(1+math.erf(x/math.sqrt(2))) for x in XS])"`.
    #[test]
    fn gelu_erf_matches_the_erf_form() {
        let reference: [(f64, f64); 16] = [
            (-6.0, -5.919525869e-09),
            (-3.5, -8.142017766e-04),
            (-2.0, -4.550026390e-02),
            (-1.2, -1.380836043e-01),
            (-0.7, -1.693745566e-01),
            (-0.3, -1.146265733e-01),
            (-0.001, -4.996010578e-04),
            (0.0, 0.0),
            (0.001, 5.003989422e-04),
            (0.25, 1.496765814e-01),
            (0.5, 3.457312306e-01),
            (0.9, 7.343458872e-01),
            (1.5, 1.399789198e+00),
            (2.5, 2.484475837e+00),
            (4.0, 3.999873315e+00),
            (8.0, 8.000000000e+00),
        ];
        let xs: Vec<f32> = reference.iter().map(|&(x, _)| x as f32).collect();
        let n = xs.len();
        let out = gelu_erf(Tensor::<B, 1>::from_data(
            TensorData::new(xs, [n]),
            &Default::default(),
        ));
        let got: Vec<f32> = out.into_data().to_vec().unwrap();
        for ((x, want), g) in reference.iter().zip(got) {
            let tol = 2e-7 * x.abs().max(1.0) + 1e-7;
            assert!(
                (g as f64 - want).abs() < tol,
                "gelu({x}) = {g}, expected {want}"
            );
        }
    }
}

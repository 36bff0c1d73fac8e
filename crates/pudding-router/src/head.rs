//! The router head: a small MLP from the pooled prompt embedding to one score per
//! candidate, saved and loaded as safetensors.

use crate::RouterError;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use std::path::Path;

/// `[b, d_in] -> relu(Linear) -> Linear -> [b, m]`.
#[derive(Module, Debug)]
pub struct RouterHead<B: Backend> {
    /// `[d_in, hidden]`.
    pub hidden: Linear<B>,
    /// `[hidden, m]`.
    pub out: Linear<B>,
}

impl<B: Backend> RouterHead<B> {
    /// Width of the embeddings the head reads (`d_in`).
    pub fn input_width(&self) -> usize {
        self.hidden.weight.dims()[0]
    }

    /// Number of scores the head returns (one per pool candidate).
    pub fn n_outputs(&self) -> usize {
        self.out.weight.dims()[1]
    }

    /// A freshly initialised head (backend seeded by the caller).
    pub fn new(d_in: usize, hidden: usize, n_candidates: usize, device: &B::Device) -> Self {
        Self {
            hidden: LinearConfig::new(d_in, hidden).init(device),
            out: LinearConfig::new(hidden, n_candidates).init(device),
        }
    }

    /// Scores `[b, m]` from embeddings `[b, d_in]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.out.forward(relu(self.hidden.forward(x)))
    }

    /// Writes the four tensors (`hidden.weight` `[d_in, hidden]`, `hidden.bias`,
    /// `out.weight` `[hidden, m]`, `out.bias`) as f32 safetensors, atomically.
    pub fn save(&self, path: &Path) -> Result<(), RouterError> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut add = |name: &str, data: TensorData| -> Result<(), RouterError> {
            let shape = data.shape.to_vec();
            let values = data
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| RouterError::Invalid(format!("{e:?}")))?;
            tensors.push((
                name.to_string(),
                shape,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            Ok(())
        };
        add("hidden.weight", self.hidden.weight.val().into_data())?;
        add("out.weight", self.out.weight.val().into_data())?;
        for (name, linear) in [("hidden.bias", &self.hidden), ("out.bias", &self.out)] {
            let bias = linear
                .bias
                .as_ref()
                .ok_or_else(|| RouterError::Invalid("router head without bias".into()))?;
            add(name, bias.val().into_data())?;
        }
        let views = tensors
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| RouterError::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bytes =
            safetensors::serialize(views, None).map_err(|e| RouterError::Invalid(e.to_string()))?;
        pudding_core::io::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Loads a head written by [`RouterHead::save`], checking the shapes against
    /// `d_in` / `n_candidates`.
    pub fn load(
        path: &Path,
        d_in: usize,
        n_candidates: usize,
        device: &B::Device,
    ) -> Result<Self, RouterError> {
        let bytes = std::fs::read(path).map_err(|source| pudding_core::CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path, d_in, n_candidates, device)
    }

    /// Parses safetensors bytes written by [`RouterHead::save`] (`path` names them in
    /// errors).
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        d_in: usize,
        n_candidates: usize,
        device: &B::Device,
    ) -> Result<Self, RouterError> {
        let malformed = |reason: String| RouterError::Malformed {
            what: "router weights",
            path: path.display().to_string(),
            line: 0,
            reason,
        };
        let st =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
        let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>), RouterError> {
            let view = st
                .tensor(name)
                .map_err(|e| malformed(format!("{name}: {e}")))?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(malformed(format!("{name} is not F32")));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(malformed(format!(
                    "{name} holds a non-finite value ({}) at element {i}",
                    values[i]
                )));
            }
            Ok((view.shape().to_vec(), values))
        };
        let (hw_shape, hw) = get("hidden.weight")?;
        let (ow_shape, ow) = get("out.weight")?;
        let (hb_shape, hb) = get("hidden.bias")?;
        let (ob_shape, ob) = get("out.bias")?;
        let hidden = hw_shape.get(1).copied().unwrap_or(0);
        if hidden == 0 {
            return Err(malformed(format!(
                "hidden.weight has shape {hw_shape:?}: the head needs a hidden layer"
            )));
        }
        if hw_shape != [d_in, hidden]
            || ow_shape != [hidden, n_candidates]
            || hb_shape != [hidden]
            || ob_shape != [n_candidates]
        {
            return Err(RouterError::Mismatch(format!(
                "router weights {} have shapes {hw_shape:?}/{ow_shape:?} but the encoder gives {d_in} features and the pool has {n_candidates} candidates",
                path.display()
            )));
        }
        let mut head = Self::new(d_in, hidden, n_candidates, device);
        head.hidden.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(hw, [d_in, hidden]),
            device,
        ));
        head.hidden.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(hb, [hidden]),
            device,
        )));
        head.out.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(ow, [hidden, n_candidates]),
            device,
        ));
        head.out.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(ob, [n_candidates]),
            device,
        )));
        Ok(head)
    }
}

//! The backend the binaries run on, chosen at build time by cargo features:
//! default `flex` (CPU), `--features wgpu` (Vulkan/Metal/DX12 GPUs), `--features cuda`
//! (NVIDIA, needs the CUDA driver at run time).

#[cfg(all(feature = "cuda", not(feature = "wgpu")))]
mod chosen {
    /// NVIDIA GPUs through CubeCL's CUDA runtime.
    pub type Backend = burn::backend::Cuda;
    /// A short name for reports.
    pub const NAME: &str = "cuda";
    /// The first GPU.
    pub fn device() -> burn::backend::cuda::CudaDevice {
        Default::default()
    }
}

#[cfg(feature = "wgpu")]
mod chosen {
    /// Any GPU with Vulkan, Metal or DX12, through wgpu.
    pub type Backend = burn::backend::Wgpu;
    /// A short name for reports.
    pub const NAME: &str = "wgpu";
    /// The default adapter.
    pub fn device() -> burn::backend::wgpu::WgpuDevice {
        Default::default()
    }
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
mod chosen {
    /// Burn's multi-threaded SIMD CPU backend.
    pub type Backend = pudding_models::CpuBackend;
    /// A short name for reports.
    pub const NAME: &str = "flex (cpu)";
    /// The CPU.
    pub fn device() -> burn::backend::flex::FlexDevice {
        pudding_models::cpu_device()
    }
}

pub use chosen::{device, Backend, NAME};

/// Makes `dtype` (`f32`, `f16` or `bf16`) the float type of every tensor created on the
/// backend's device from now on: weights are converted while loading, activations stay in
/// it (norms, softmax and the logits run in f32). Call it before loading anything.
pub fn set_float_dtype(dtype: &str) -> Result<(), String> {
    use burn::tensor::FloatDType;
    let float = match dtype {
        "f32" => return Ok(()),
        "f16" => FloatDType::F16,
        "bf16" => FloatDType::BF16,
        other => return Err(format!("unknown dtype {other:?}: use f32, f16 or bf16")),
    };
    burn::tensor::backend::set_default_float_dtype::<Backend>(&device(), float)
        .map_err(|e| format!("{NAME} cannot use {dtype}: {e:?}"))
}

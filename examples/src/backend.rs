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

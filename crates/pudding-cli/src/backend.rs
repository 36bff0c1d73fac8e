//! The backend the binaries run on, chosen at build time by cargo features:
//! default `flex` (CPU), `--features wgpu` (Vulkan/Metal/DX12 GPUs), `--features cuda`
//! (NVIDIA, needs the CUDA driver at run time).
//!
//! Burn's GPU runtimes panic from a background thread when their driver or device is
//! missing (cudarc cannot load `libcuda`, cubecl-wgpu finds no adapter). Every binary
//! therefore calls [`start`] first: it checks that the backend can start on this machine
//! (driver libraries loadable, a device found, the requested index present) and returns a
//! [`BackendError`] naming what is missing and the alternative, before any tensor exists.

use std::sync::OnceLock;

/// Why the backend this binary was built for cannot start on this machine.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// `libcuda` (the NVIDIA driver's user-space library) cannot be loaded.
    #[error(
        "this binary was built with `--features cuda`, but the NVIDIA driver library (libcuda) \
         could not be loaded (searched {searched}); install the NVIDIA driver or add its \
         directory to LD_LIBRARY_PATH, or use the CPU build (the same command without \
         `--features cuda`)"
    )]
    CudaDriverMissing {
        /// The library names tried, in order.
        searched: String,
    },
    /// `libnvrtc` (the CUDA toolkit's runtime compiler, which builds the kernels) is missing.
    #[error(
        "this binary was built with `--features cuda`, but the CUDA runtime compiler library \
         (libnvrtc, CUDA 12.x toolkit) could not be loaded (searched {searched}); install the \
         CUDA toolkit or add its lib64 directory to LD_LIBRARY_PATH, or use the CPU build \
         (the same command without `--features cuda`)"
    )]
    NvrtcMissing {
        /// The library names tried, in order.
        searched: String,
    },
    /// `cuInit` failed (driver and library versions differ, or the driver is not loaded).
    #[error(
        "the NVIDIA driver is installed but failed to initialise ({reason}); check `nvidia-smi`, \
         or use the CPU build (the same command without `--features cuda`)"
    )]
    CudaInit {
        /// The driver's error.
        reason: String,
    },
    /// The driver works but reports no device.
    #[error(
        "the NVIDIA driver reports no CUDA device on this machine; use the CPU build (the same \
         command without `--features cuda`)"
    )]
    NoCudaDevice,
    /// `--device N` names a CUDA device that does not exist.
    #[error("CUDA device {index} does not exist: this machine has {count} (indices 0-{last})", last = count - 1)]
    CudaDeviceOutOfRange {
        /// The requested index.
        index: usize,
        /// Devices present (at least one).
        count: usize,
    },
    /// wgpu found no adapter for the graphics API Burn uses on this platform.
    #[error(
        "this binary was built with `--features wgpu`, but wgpu found no {api} adapter on this \
         machine (no GPU driver, or no Vulkan loader and ICD installed, e.g. Debian's \
         libvulkan1 + mesa-vulkan-drivers); install one, or use the CPU build (the same \
         command without `--features wgpu`)"
    )]
    NoWgpuAdapter {
        /// The graphics API (`Vulkan`, `Metal`, `Dx12`).
        api: String,
    },
    /// `--device N` names a discrete GPU that wgpu does not list.
    #[error(
        "wgpu discrete GPU {index} does not exist: {api} lists {count} discrete GPU(s) \
         (adapters: {adapters})"
    )]
    WgpuDeviceOutOfRange {
        /// The requested index among discrete GPUs.
        index: usize,
        /// Discrete GPUs listed.
        count: usize,
        /// The graphics API searched.
        api: String,
        /// Every adapter found, with its type.
        adapters: String,
    },
    /// `--device N` with N > 0 on the CPU backend, which has one device.
    #[error(
        "--device {index}: the CPU backend has one device (0); device indices select a GPU in \
         a `--features cuda` or `--features wgpu` build"
    )]
    CpuDeviceIndex {
        /// The requested index.
        index: usize,
    },
    /// `--dtype` names a type this backend cannot hold.
    #[error("{backend} cannot use {dtype}: {reason}")]
    Dtype {
        /// The backend's name.
        backend: &'static str,
        /// The requested float type.
        dtype: String,
        /// What the backend said.
        reason: String,
    },
    /// `--dtype` is not a float type we know.
    #[error("unknown dtype {0:?}: use f32, f16 or bf16")]
    UnknownDtype(String),
}

#[cfg(all(feature = "cuda", not(feature = "wgpu")))]
mod chosen {
    use super::BackendError;

    /// NVIDIA GPUs through CubeCL's CUDA runtime.
    pub type Backend = burn::backend::Cuda;
    /// A Burn device of [`Backend`].
    pub type Device = burn::backend::cuda::CudaDevice;
    /// A short name for reports.
    pub const NAME: &str = "cuda";

    /// The file names cudarc tries for `names`, shortened to the Linux-style ones
    /// (`libcuda.so`, `libcuda.so.1`, ...) and a count of the rest.
    fn searched(names: &[&str]) -> String {
        let mut all: Vec<String> = Vec::new();
        for candidate in names
            .iter()
            .flat_map(|n| cudarc::get_lib_name_candidates(n))
        {
            if !all.contains(&candidate) {
                all.push(candidate);
            }
        }
        let plain = format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            names[0],
            std::env::consts::DLL_SUFFIX
        );
        let shown: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|c| c.starts_with(&plain))
            .collect();
        format!(
            "{} and {} other names",
            shown.join(", "),
            all.len() - shown.len()
        )
    }

    /// Loads the driver and NVRTC libraries the way cudarc will, initialises the driver
    /// and counts devices; only then may cudarc (which panics on each of these) run.
    pub fn probe(index: Option<usize>) -> Result<Device, BackendError> {
        use cudarc::driver::{result, sys};
        // SAFETY: loading a shared library runs its initialisers; libcuda and libnvrtc are
        // the libraries cudarc itself loads for this backend.
        if !unsafe { sys::is_culib_present() } {
            return Err(BackendError::CudaDriverMissing {
                searched: searched(&["cuda", "nvcuda"]),
            });
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(BackendError::NvrtcMissing {
                searched: searched(&["nvrtc"]),
            });
        }
        // cudarc resolves each function on first call and panics if the library lacks it
        // (a toolkit's link-time stub, a foreign file named libcuda).
        for symbol in ["cuInit", "cuDeviceGetCount"] {
            // SAFETY: only looks the symbol up; nothing is called through this pointer.
            let found = unsafe { sys::culib().get::<unsafe extern "C" fn()>(symbol.as_bytes()) };
            if found.is_err() {
                return Err(BackendError::CudaInit {
                    reason: format!("the loaded libcuda has no {symbol}"),
                });
            }
        }
        // The error's name only: cudarc's Display asks the driver for a message, which
        // needs yet another symbol.
        let failed = |e: result::DriverError| BackendError::CudaInit {
            reason: format!("{:?}", e.0),
        };
        result::init().map_err(|e| match e.0 {
            sys::cudaError_enum::CUDA_ERROR_NO_DEVICE => BackendError::NoCudaDevice,
            _ => failed(e),
        })?;
        let count = result::device::get_count().map_err(failed)?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err(BackendError::NoCudaDevice);
        }
        let index = index.unwrap_or(0);
        if index >= count {
            return Err(BackendError::CudaDeviceOutOfRange { index, count });
        }
        Ok(burn::backend::cuda::CudaDevice { index })
    }
}

#[cfg(feature = "wgpu")]
mod chosen {
    use super::BackendError;
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    use burn::backend::wgpu::WgpuDevice;

    /// Any GPU with Vulkan, Metal or DX12, through wgpu.
    pub type Backend = burn::backend::Wgpu;
    /// A Burn device of [`Backend`].
    pub type Device = WgpuDevice;
    /// A short name for reports.
    pub const NAME: &str = "wgpu";

    /// Lists the adapters of the graphics API Burn's `Wgpu` uses here (its
    /// `AutoGraphicsApi`), as cubecl-wgpu will when it starts: none is an error, and
    /// `index` counts discrete GPUs, as Burn's `WgpuDevice::DiscreteGpu(index)` does.
    pub fn probe(index: Option<usize>) -> Result<Device, BackendError> {
        let backend = AutoGraphicsApi::backend();
        let api = format!("{backend:?}");
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = super::block_on(instance.enumerate_adapters(backend.into()));
        if adapters.is_empty() {
            return Err(BackendError::NoWgpuAdapter { api });
        }
        let Some(index) = index else {
            return Ok(WgpuDevice::DefaultDevice);
        };
        let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
        let count = infos
            .iter()
            .filter(|i| i.device_type == wgpu::DeviceType::DiscreteGpu)
            .count();
        if index >= count {
            let adapters = infos
                .iter()
                .map(|i| format!("{} ({:?})", i.name, i.device_type))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(BackendError::WgpuDeviceOutOfRange {
                index,
                count,
                api,
                adapters,
            });
        }
        Ok(WgpuDevice::DiscreteGpu(index))
    }
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
mod chosen {
    use super::BackendError;

    /// Burn's multi-threaded SIMD CPU backend.
    pub type Backend = pudding_models::CpuBackend;
    /// A Burn device of [`Backend`].
    pub type Device = burn::backend::flex::FlexDevice;
    /// A short name for reports.
    pub const NAME: &str = "flex (cpu)";

    /// The CPU is always there; it is device 0 and the only one.
    pub fn probe(index: Option<usize>) -> Result<Device, BackendError> {
        match index {
            None | Some(0) => Ok(pudding_models::cpu_device()),
            Some(index) => Err(BackendError::CpuDeviceIndex { index }),
        }
    }
}

pub use chosen::{Backend, Device, NAME};

/// The device [`start`] chose.
static STARTED: OnceLock<Device> = OnceLock::new();

/// Checks that the backend can start on this machine and chooses its device: `index` is
/// the CUDA device, or for wgpu the n-th discrete GPU (`None`: the backend's default
/// device). Call it before anything touches the backend; later calls return the device
/// the first successful call chose.
#[allow(clippy::clone_on_copy)] // the CPU device is `Copy`, the GPU devices only `Clone`
pub fn start(index: Option<usize>) -> Result<Device, BackendError> {
    if let Some(device) = STARTED.get() {
        return Ok(device.clone());
    }
    let device = chosen::probe(index)?;
    Ok(STARTED.get_or_init(|| device).clone())
}

/// The device [`start`] chose; before `start`, the backend's default device (on a GPU
/// build, call `start` first: it is what turns a missing driver into an error).
pub fn device() -> Device {
    STARTED.get().cloned().unwrap_or_default()
}

/// Makes `dtype` (`f32`, `f16` or `bf16`) the float type of every tensor created on the
/// backend's device from now on: weights are converted while loading, activations stay in
/// it (norms, softmax and the logits run in f32). Call it after [`start`], before loading
/// anything.
pub fn set_float_dtype(dtype: &str) -> Result<(), BackendError> {
    use burn::tensor::FloatDType;
    let float = match dtype {
        "f32" => return Ok(()),
        "f16" => FloatDType::F16,
        "bf16" => FloatDType::BF16,
        other => return Err(BackendError::UnknownDtype(other.to_string())),
    };
    burn::tensor::backend::set_default_float_dtype::<Backend>(&device(), float).map_err(|e| {
        BackendError::Dtype {
            backend: NAME,
            dtype: dtype.to_string(),
            reason: format!("{e:?}"),
        }
    })
}

/// Runs a future that needs no reactor (wgpu's adapter queries on native platforms) to
/// completion on this thread.
#[cfg(feature = "wgpu")]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

//! `--device cpu|wgpu|cuda`: the one place the binary names a backend.

use burn::tensor::{Device, Tensor};

/// A device the user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// burn's Flex CPU backend (always built).
    Cpu,
    /// A GPU through wgpu (build with `--features wgpu`).
    Wgpu,
    /// An NVIDIA GPU through CUDA (build with `--features cuda`).
    Cuda,
}

/// Creates the device and checks it can run a tensor operation, so that an unavailable
/// backend is a clear error at start-up rather than a failure deep inside a model.
pub fn select(arg: DeviceArg) -> Result<Device, String> {
    let device = match arg {
        DeviceArg::Cpu => Device::flex(),
        DeviceArg::Wgpu => wgpu_device()?,
        DeviceArg::Cuda => cuda_device()?,
    };
    probe(&device, arg)?;
    Ok(device)
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, String> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, String> {
    Err("--device wgpu: this build has no wgpu backend; rebuild with `--features wgpu`".into())
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, String> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, String> {
    Err("--device cuda: this build has no CUDA backend; rebuild with `--features cuda`".into())
}

/// Runs one small operation; a backend that cannot start (no adapter, no driver) panics
/// inside burn, which is caught here and reported as an error.
fn probe(device: &Device, arg: DeviceArg) -> Result<(), String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let device = device.clone();
    let result = std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
        t.sum().into_scalar::<f32>()
    });
    std::panic::set_hook(previous);
    match result {
        Ok(3.0) => Ok(()),
        Ok(v) => Err(format!("--device {arg:?}: the backend computed 1 + 2 = {v}")),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(format!("--device {}: the backend is not available here: {msg}", format!("{arg:?}").to_lowercase()))
        }
    }
}

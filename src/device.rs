//! Choosing where to compute: the one place the `steex` binary, the examples, the benchmarks
//! and the tests name a backend (`--device cpu|wgpu|cuda`, or the tests'
//! `STEEX_TEST_DEVICE`). The models and the explainer only ever take a `&Device`.

use std::str::FromStr;

use burn::tensor::{Device, Tensor};

/// The environment variable the tests read their device from (`cpu` when unset).
pub const TEST_DEVICE_VAR: &str = "STEEX_TEST_DEVICE";

/// A device the user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceArg {
    /// burn's Flex CPU backend (always built).
    #[default]
    Cpu,
    /// A GPU through wgpu (build with `--features wgpu`).
    Wgpu,
    /// An NVIDIA GPU through CUDA (build with `--features cuda`).
    Cuda,
}

/// Why a device could not be chosen or started.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A name other than `cpu`, `wgpu` or `cuda`.
    #[error("unknown device `{0}`: expected cpu, wgpu or cuda")]
    Unknown(String),
    /// `--device` with nothing after it.
    #[error("--device needs a value: cpu, wgpu or cuda")]
    MissingValue,
    /// The backend was not compiled into this build.
    #[error("--device {device}: this build has no {device} backend; rebuild with `--features {device}`")]
    NotBuilt {
        /// `wgpu` or `cuda`.
        device: &'static str,
    },
    /// The backend is built but cannot start here (no adapter, no driver) or computes wrongly.
    #[error("--device {device}: the backend is not available here: {reason}")]
    Unavailable {
        /// The device asked for.
        device: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl DeviceArg {
    /// The name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DeviceArg::Cpu => "cpu",
            DeviceArg::Wgpu => "wgpu",
            DeviceArg::Cuda => "cuda",
        }
    }

    /// Reads the device from the environment variable `var`; `cpu` when it is unset or empty.
    pub fn from_env(var: &str) -> Result<DeviceArg, DeviceError> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse(),
            _ => Ok(DeviceArg::Cpu),
        }
    }
}

impl FromStr for DeviceArg {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceArg::Cpu),
            "wgpu" => Ok(DeviceArg::Wgpu),
            "cuda" => Ok(DeviceArg::Cuda),
            _ => Err(DeviceError::Unknown(s.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Removes `--device NAME` (or `--device=NAME`) from `args` and returns the device asked for
/// (`cpu` when absent) with the other arguments in order: for the examples and benchmarks,
/// whose other arguments are positional.
pub fn take_device_arg(args: Vec<String>) -> Result<(DeviceArg, Vec<String>), DeviceError> {
    let mut device = DeviceArg::Cpu;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--device" {
            device = it.next().ok_or(DeviceError::MissingValue)?.parse()?;
        } else if let Some(v) = a.strip_prefix("--device=") {
            device = v.parse()?;
        } else {
            rest.push(a);
        }
    }
    Ok((device, rest))
}

/// Creates the device and checks it can run a tensor operation, so that an unavailable
/// backend is a clear error at start-up rather than a failure deep inside a model.
pub fn select(arg: DeviceArg) -> Result<Device, DeviceError> {
    let device = match arg {
        DeviceArg::Cpu => Device::flex(),
        DeviceArg::Wgpu => wgpu_device()?,
        DeviceArg::Cuda => cuda_device()?,
    };
    probe(&device, arg)?;
    Ok(device)
}

/// The program's own arguments (after the program name) less `--device NAME`, and the
/// started device: the examples' and benchmarks' start-up. Prints the error and exits with
/// status 2 when the device is unknown or cannot start.
pub fn from_args_or_exit() -> (Device, DeviceArg, Vec<String>) {
    let started = take_device_arg(std::env::args().skip(1).collect())
        .and_then(|(arg, rest)| select(arg).map(|device| (device, arg, rest)));
    started.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    })
}

/// A one-line description of a started device: the backend and, for a GPU backend, the
/// adapter as it names itself and what kernels are compiled for.
pub fn describe(device: &Device) -> String {
    let base = format!("{device:?}");
    match identity(device) {
        Some(id) => format!("{base}: {id}"),
        None => base,
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn identity(device: &Device) -> Option<String> {
    if *device == Device::flex() {
        return None;
    }
    device.identity().map(|id| format!("{} ({})", id.name, id.fingerprint))
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn identity(_device: &Device) -> Option<String> {
    None
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, DeviceError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt { device: "wgpu" })
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, DeviceError> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt { device: "cuda" })
}

/// Runs one small operation; a backend that cannot start (no adapter, no driver) panics
/// inside burn, which is caught here and reported as an error.
fn probe(device: &Device, arg: DeviceArg) -> Result<(), DeviceError> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let device = device.clone();
    let result = std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
        t.sum().into_scalar::<f32>()
    });
    std::panic::set_hook(previous);
    let reason = match result {
        Ok(3.0) => return Ok(()),
        Ok(v) => format!("the backend computed 1 + 2 = {v}"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into()),
    };
    Err(DeviceError::Unavailable { device: arg.name(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn device_flags_are_taken_out_of_positional_arguments() {
        let (d, rest) = take_device_arg(strings(&["celeba", "--device", "wgpu", "8"])).unwrap();
        assert_eq!((d, rest), (DeviceArg::Wgpu, strings(&["celeba", "8"])));
        let (d, rest) = take_device_arg(strings(&["--device=cuda", "bdd"])).unwrap();
        assert_eq!((d, rest), (DeviceArg::Cuda, strings(&["bdd"])));
        assert_eq!(take_device_arg(strings(&["x"])).unwrap().0, DeviceArg::Cpu);
        assert!(matches!(take_device_arg(strings(&["--device"])), Err(DeviceError::MissingValue)));
        let e = take_device_arg(strings(&["--device", "tpu"])).unwrap_err().to_string();
        assert!(e.contains("unknown device `tpu`"), "{e}");
    }

    #[test]
    fn unbuilt_backends_are_clear_errors() {
        #[cfg(not(feature = "cuda"))]
        {
            let e = select(DeviceArg::Cuda).unwrap_err().to_string();
            assert!(e.contains("rebuild with `--features cuda`"), "{e}");
        }
        #[cfg(not(feature = "wgpu"))]
        {
            let e = select(DeviceArg::Wgpu).unwrap_err().to_string();
            assert!(e.contains("rebuild with `--features wgpu`"), "{e}");
        }
        assert_eq!(describe(&select(DeviceArg::Cpu).unwrap()), format!("{:?}", Device::flex()));
    }
}

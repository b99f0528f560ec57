//! `--device cpu|wgpu|cuda`: the binary's use of the library's one device choice
//! ([`steex::device`], shared with the examples, benchmarks and tests).

use burn::tensor::Device;

pub use steex::device::DeviceArg;

/// Creates the device and checks it can run a tensor operation (see [`steex::device::select`]).
pub fn select(arg: DeviceArg) -> Result<Device, String> {
    steex::device::select(arg).map_err(|e| e.to_string())
}

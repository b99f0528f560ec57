//! Float32 arrays: `.npy` files and burn tensors.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use crate::error::{IoError, Result, io_err, one_line};

/// A float32 array with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Shape, C order.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

impl Array {
    /// As a burn tensor of rank `D` on `device` (the shape must have `D` dims).
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape.clone()), device)
    }

    /// From a burn tensor.
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Self {
        let shape = t.dims().to_vec();
        Array { shape, data: host(t) }
    }
}

/// A tensor's values on the host as `f32`, row-major (the workspace's one conversion).
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("float32 data")
}

/// Reads a float32 `.npy` file, refusing other dtypes and non-finite values.
pub fn read_npy(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    check_npy_sizes(&bytes).map_err(|reason| IoError::Npy { path: path.to_path_buf(), reason })?;
    let arr = ArrayD::<f32>::read_npy(&bytes[..]).map_err(|e| IoError::Npy {
        path: path.to_path_buf(),
        reason: format!("not a float32 .npy array in C order: {}", one_line(&e.to_string())),
    })?;
    let shape = arr.shape().to_vec();
    let data: Vec<f32> = arr.into_iter().collect();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(IoError::Npy {
            path: path.to_path_buf(),
            reason: format!("value {} at flat index {i} is not finite", data[i]),
        });
    }
    Ok(Array { shape, data })
}

/// Checks the sizes a `.npy` header claims against the file before anything is allocated
/// from them: the header length, and the data the shape needs (4 bytes an element, as only
/// float32 is read). Other defects are left to the `.npy` parser's own messages.
fn check_npy_sizes(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic string)".into());
    }
    let (prefix, header_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
        v => return Err(format!("unsupported .npy format version {v} (expected 1, 2 or 3)")),
    };
    let data_start = prefix + header_len;
    if data_start > bytes.len() {
        return Err(format!("the header claims {header_len} bytes but the file holds {}", bytes.len()));
    }
    let header = String::from_utf8_lossy(&bytes[prefix..data_start]);
    let shape = header
        .find("shape")
        .and_then(|i| header[i..].find('(').map(|j| i + j + 1))
        .and_then(|s| header[s..].find(')').map(|e| &header[s..s + e]));
    if let Some(shape) = shape {
        let dims: Option<Vec<usize>> =
            shape.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().ok()).collect();
        if let Some(dims) = dims {
            let need = dims.iter().try_fold(4usize, |n, &d| n.checked_mul(d));
            let have = bytes.len() - data_start;
            if need.is_none_or(|n| n > have) {
                return Err(format!(
                    "the header's shape {dims:?} needs {} bytes of float32 data but the file holds {have}",
                    need.map_or("more than 2^64".to_string(), |n| n.to_string())
                ));
            }
        }
    }
    Ok(())
}

/// Writes a float32 `.npy` file atomically.
pub fn write_npy(path: &Path, a: &Array) -> Result<()> {
    let arr = ArrayD::from_shape_vec(IxDyn(&a.shape), a.data.clone()).map_err(|e| IoError::Argument(e.to_string()))?;
    crate::atomic::atomic_write(path, |w| arr.write_npy(w).map_err(std::io::Error::other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.npy");
        let a = Array { shape: vec![2, 3], data: vec![1., 2., 3., 4., 5., 6.] };
        write_npy(&p, &a).unwrap();
        assert_eq!(read_npy(&p).unwrap(), a);
        std::fs::write(&p, b"not an array").unwrap();
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("magic"), "{e}");
    }
}

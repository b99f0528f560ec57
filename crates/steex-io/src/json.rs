//! JSON files read and written through typed values.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{IoError, Result, io_err};

/// A value as pretty JSON, keys in field order.
pub fn to_pretty(v: &impl Serialize) -> String {
    serde_json::to_string_pretty(v).expect("a serialisable value with string keys")
}

/// A value as pretty JSON through `serde_json::Value`: object keys sorted whatever the
/// order of a struct's fields, and `f32`s written as the `f64`s they widen to (as a file
/// built with `json!` is).
pub fn to_pretty_sorted(v: &impl Serialize) -> String {
    let value = serde_json::to_value(v).expect("a serialisable value with string keys");
    serde_json::to_string_pretty(&value).expect("a JSON value")
}

/// A value as one line of JSON, keys in field order.
pub fn to_line(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("a serialisable value with string keys")
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    crate::atomic::write_bytes(path, to_pretty(v).as_bytes())
}

/// Reads a JSON file as `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text)
        .map_err(|e| IoError::Argument(format!("{}: not the expected JSON: {e}", path.display())))
}

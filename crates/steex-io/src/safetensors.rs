//! The safetensors header, built in one place for every writer (the converter's files, the
//! random and live weights of the model crates).
//!
//! The `safetensors` crate keeps file metadata in a `HashMap` and serialises it in hash
//! order, so two runs would write different bytes. The header here is built from sorted
//! maps: the bytes depend only on the tensors (in the order given) and the metadata.

use std::collections::BTreeMap;

/// One tensor of a safetensors file, as its header describes it.
#[derive(Debug, Clone, Copy)]
pub struct TensorEntry<'a> {
    /// Name.
    pub name: &'a str,
    /// Element type as safetensors spells it (`F32`, `I64`, ...).
    pub dtype: &'a str,
    /// Shape.
    pub shape: &'a [usize],
    /// Bytes of data.
    pub len: usize,
}

/// The header (without its 8-byte length prefix) of a file holding `tensors`, stored one
/// after the other in the order given, and `metadata` (omitted when empty), padded with
/// spaces to a multiple of 8 bytes as the format asks.
pub fn header<'a>(tensors: impl IntoIterator<Item = TensorEntry<'a>>, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        map.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.len;
        map.insert(
            t.name.to_string(),
            serde_json::json!({
                "dtype": t.dtype,
                "shape": t.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&serde_json::Value::Object(map)).expect("JSON of strings and numbers");
    while !bytes.len().is_multiple_of(8) {
        bytes.push(b' ');
    }
    bytes
}

/// A whole safetensors file in memory: the header's length, the header, then `data` (the
/// tensors' bytes in header order).
pub fn file_bytes(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + header.len() + data.len());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_sorted_padded_and_offsets_follow_the_order() {
        let mut m = BTreeMap::new();
        m.insert("kind".to_string(), "x".to_string());
        let h = header(
            [
                TensorEntry { name: "b", dtype: "F32", shape: &[2], len: 8 },
                TensorEntry { name: "a", dtype: "F32", shape: &[1], len: 4 },
            ],
            &m,
        );
        assert_eq!(h.len() % 8, 0);
        let v: serde_json::Value = serde_json::from_slice(&h).unwrap();
        assert_eq!(v["b"]["data_offsets"], serde_json::json!([0, 8]));
        assert_eq!(v["a"]["data_offsets"], serde_json::json!([8, 12]));
        assert_eq!(v["__metadata__"]["kind"], "x");
    }
}

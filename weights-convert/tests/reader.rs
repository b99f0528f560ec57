//! The checkpoint reader on fixtures written by PyTorch (`tools/make_fixtures.py`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weights_convert::checkpoint::TensorData;
use weights_convert::{Checkpoint, Container, convert_state_dict};

/// A skipped full-size test, said on stderr and appended to `STEEX_SKIP_LOG` when set (as
/// `tests/common/mod.rs`' `skip_full`; CI counts the lines).
fn skip_full(test: &str, reason: &str) {
    eprintln!("skipped {test}: {reason}");
    if let Some(log) = std::env::var_os("STEEX_SKIP_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("STEEX_SKIP_LOG");
        writeln!(f, "{test}: {reason}").expect("STEEX_SKIP_LOG");
    }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

fn read_all(path: &Path) -> BTreeMap<String, TensorData> {
    Checkpoint::open(path).unwrap().read_state_dict().unwrap()
}

#[test]
fn zip_and_legacy_copies_read_to_identical_tensors() {
    for (zip, legacy) in [
        ("sean_sq/latest_net_G.pth", "sean_sq/latest_net_G_legacy.pth"),
        ("densenet/checkpoint.tar", "densenet/checkpoint_legacy.tar"),
    ] {
        let a = Checkpoint::open(fixture(zip)).unwrap();
        let b = Checkpoint::open(fixture(legacy)).unwrap();
        assert_eq!(a.container(), Container::Zip);
        assert_eq!(b.container(), Container::Legacy);
        let (ta, tb) = (a.read_state_dict().unwrap(), b.read_state_dict().unwrap());
        assert!(ta.len() > 50, "{zip}: only {} tensors", ta.len());
        assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
        for (k, t) in &ta {
            assert_eq!(t, &tb[k], "{zip}: tensor {k} differs between containers");
        }
    }
}

#[test]
fn training_checkpoint_uses_model_state_dict_and_accepts_optimizer_state() {
    let ck = Checkpoint::open(fixture("densenet/checkpoint.tar")).unwrap();
    assert_eq!(ck.top_level_keys(), ["epoch", "loss", "model_state_dict", "optimizer_state_dict"]);
    // The optimiser took a step, so its state holds tensors: they are read but not used.
    assert!(ck.tensors().any(|(n, _, _)| n.starts_with("optimizer_state_dict.")));
    let sd = ck.read_state_dict().unwrap();
    assert!(sd.contains_key("classifier.weight"));
    assert!(sd.keys().all(|k| !k.starts_with("optimizer_state_dict") && !k.starts_with("model_state_dict")));
    let conv0 = &sd["feat_extract.feat_extract.features.conv0.weight"];
    assert_eq!(conv0.shape, vec![16, 3, 7, 7]);
    // PyTorch default init gives a spread of values, not zeros.
    let v = conv0.to_f32().unwrap();
    assert!(v.iter().any(|x| x.abs() > 1e-3));
}

#[test]
fn spectral_norm_resolution_matches_pytorch_eval_mode() {
    let ck = Checkpoint::open(fixture("sean_sq/latest_net_G.pth")).unwrap();
    let converted = convert_state_dict(&ck, None).unwrap();
    assert!(converted.tensors.keys().all(|k| !k.contains("weight_orig") && !k.ends_with("weight_u")));
    let bytes = std::fs::read(fixture("sean_sq/sn_expected.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    let mut worst = 0f64;
    for (name, view) in expected.tensors() {
        let want: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let got = converted.tensors[&name].to_f32().unwrap();
        assert_eq!(converted.tensors[&name].shape, view.shape(), "{name}");
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs() as f64));
        let err = got.iter().zip(&want).fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
        worst = worst.max(err / scale);
        assert!(err <= 1e-6 * scale, "{name}: max abs err {err:e} > 1e-6 x {scale:e}");
        checked += 1;
    }
    // conv_0 and conv_1 of 7 blocks, conv_s of the 4 blocks that change width.
    assert_eq!(checked, 18);
    eprintln!("spectral norm: worst relative error {worst:e} over {checked} layers");
}

#[test]
fn generic_conversion_is_byte_identical_across_containers_and_drops_counters() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for (i, f) in ["sean_sq/latest_net_G.pth", "sean_sq/latest_net_G_legacy.pth"].iter().enumerate() {
        let ck = Checkpoint::open(fixture(f)).unwrap();
        let c = convert_state_dict(&ck, None).unwrap();
        assert!(c.tensors.keys().all(|k| !k.ends_with("num_batches_tracked")));
        assert!(c.metadata["dropped_tensors"].contains("head_0.ace_0.param_free_norm.num_batches_tracked"));
        let out = dir.path().join(format!("{i}.safetensors"));
        c.write(&out).unwrap();
        outputs.push(std::fs::read(out).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    let text = String::from_utf8_lossy(&outputs[0][..4096]).to_string();
    assert!(!text.contains(dir.path().to_str().unwrap()), "absolute path in metadata");
}

#[test]
fn reads_the_published_layout_names() {
    let ck = Checkpoint::open(fixture("sean_wide/latest_net_G.pth")).unwrap();
    let names: Vec<String> = ck.state_dict_names().into_iter().map(|(n, _)| n).collect();
    for want in [
        "Zencoder.model.10.weight",
        "head_0.ace_0.fc_mu19.weight",
        "up_0.conv_s.weight_orig",
        "up_3.ace_0.Spade.mlp_shared.0.weight",
        "conv_img.bias",
    ] {
        assert!(names.iter().any(|n| n == want), "missing {want}");
    }
    assert!(!names.iter().any(|n| n.starts_with("up_3.ace_0.fc_mu")));
}

/// Full-size SEAN (celebamhq preset, ~1 GiB) written by `tools/make_fixtures.py --full`;
/// runs when present. Peak memory is measured on the binary (see README).
#[test]
fn full_size_sean_reads_in_both_containers_when_present() {
    let zip = fixture("full/sean_celebamhq.pth");
    let legacy = fixture("full/sean_celebamhq_legacy.pth");
    if !zip.exists() || !legacy.exists() {
        skip_full("reader sean_celebamhq", &format!("{} not present (tools/make_fixtures.py --full)", zip.display()));
        return;
    }
    let a = read_all(&zip);
    let n: usize = a.values().map(|t| t.numel()).sum();
    assert!(n > 260_000_000, "{n} values");
    drop(a);
    let b = read_all(&legacy);
    assert_eq!(b.values().map(|t| t.numel()).sum::<usize>(), n);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// float16, bfloat16, float64 and int64 tensors and views sharing one storage (offsets,
/// strides, a transpose, a stepped slice, a zero stride), saved by torch in both containers
/// (`tools/make_dtype_fixtures.py`): every tensor reads to PyTorch's exact bytes, and its
/// float32 conversion to the exact bytes of torch's `.float()`.
#[test]
fn dtypes_and_shared_storage_views_read_to_exact_values() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("dtypes/expected.json")).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    for file in ["dtypes/dtypes.pth", "dtypes/dtypes_legacy.pth"] {
        let sd = read_all(&fixture(file));
        assert_eq!(sd.len(), expected.len(), "{file}: {:?}", sd.keys().collect::<Vec<_>>());
        for (name, e) in expected {
            let t = sd.get(name).unwrap_or_else(|| panic!("{file}: no tensor {name}"));
            let dtype = match e["dtype"].as_str().unwrap() {
                "float16" => "F16",
                "bfloat16" => "BF16",
                "float32" => "F32",
                "float64" => "F64",
                "int64" => "I64",
                other => panic!("dtype {other}"),
            };
            assert_eq!(weights_convert::checkpoint::dtype_name(t.dtype), dtype, "{file}: {name}");
            let shape: Vec<usize> =
                e["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(t.shape, shape, "{file}: {name}");
            assert_eq!(t.bytes, unhex(e["bytes"].as_str().unwrap()), "{file}: {name}: bytes differ from PyTorch's");
            match e.get("f32") {
                Some(f) => {
                    let got: Vec<u8> = t.to_f32().unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
                    assert_eq!(got, unhex(f.as_str().unwrap()), "{file}: {name}: float32 values differ from torch's");
                }
                None => assert!(t.to_f32().is_none(), "{file}: {name}: an integer tensor read as floats"),
            }
        }
    }
}

//! The published presets: image sizes, region (label) names, decision output names and
//! default attributes.

/// Region names of the face models (CelebA, CelebAMask-HQ), in label order.
pub const FACE_REGIONS: [&str; 19] = [
    "background",
    "skin",
    "nose",
    "glasses",
    "left_eye",
    "right_eye",
    "left_brow",
    "right_brow",
    "left_ear",
    "right_ear",
    "mouth",
    "upper_lip",
    "lower_lip",
    "hair",
    "hat",
    "earring",
    "necklace",
    "neck",
    "cloth",
];

/// Region names of the BDD100k model, in label order.
pub const BDD_REGIONS: [&str; 20] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic_light",
    "traffic_sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
    "unlabeled",
];

/// Decision outputs of the face models.
pub const FACE_ATTRIBUTES: [&str; 3] = ["male", "smile", "young"];
/// Decision outputs of the BDD model.
pub const BDD_ATTRIBUTES: [&str; 4] = ["move_forward", "stop", "turn_left", "turn_right"];

/// A published setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// `celeba`, `celebamhq` or `bdd`.
    pub name: &'static str,
    /// Image `(height, width)`.
    pub image_size: (usize, usize),
    /// Region names in label order.
    pub regions: &'static [&'static str],
    /// Decision output names.
    pub attributes: &'static [&'static str],
    /// The attribute the paper explains by default.
    pub default_attribute: usize,
}

/// The three published presets.
pub const PRESETS: [Preset; 3] = [
    Preset {
        name: "celeba",
        image_size: (128, 128),
        regions: &FACE_REGIONS,
        attributes: &FACE_ATTRIBUTES,
        default_attribute: 1,
    },
    Preset {
        name: "celebamhq",
        image_size: (256, 256),
        regions: &FACE_REGIONS,
        attributes: &FACE_ATTRIBUTES,
        default_attribute: 1,
    },
    Preset {
        name: "bdd",
        image_size: (256, 512),
        regions: &BDD_REGIONS,
        attributes: &BDD_ATTRIBUTES,
        default_attribute: 0,
    },
];

impl Preset {
    /// A preset by name.
    pub fn by_name(name: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.name == name)
    }
}

/// Region names for a model with `labels` labels: faces for 19, BDD for 20, else `label_<i>`.
pub fn region_names(labels: usize, preset: Option<&Preset>) -> Vec<String> {
    match preset {
        Some(p) if p.regions.len() == labels => p.regions.iter().map(|s| s.to_string()).collect(),
        _ if labels == 19 => FACE_REGIONS.iter().map(|s| s.to_string()).collect(),
        _ if labels == 20 => BDD_REGIONS.iter().map(|s| s.to_string()).collect(),
        _ => (0..labels).map(|i| format!("label_{i}")).collect(),
    }
}

/// Attribute names for a model with `outputs` outputs: faces for 3, BDD for 4, else
/// `output_<i>`.
pub fn attribute_names(outputs: usize, preset: Option<&Preset>) -> Vec<String> {
    match preset {
        Some(p) if p.attributes.len() == outputs => p.attributes.iter().map(|s| s.to_string()).collect(),
        _ => steex_classifier::default_output_names(outputs),
    }
}

/// Resolves names or ids (`mouth,hair` or `10,13`) against `names`; an unknown name is an
/// error listing the valid ones.
pub fn resolve(items: &[String], names: &[String], what: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for it in items {
        let it = it.trim();
        let id = match it.parse::<usize>() {
            Ok(i) if i < names.len() => i,
            Ok(i) => {
                return Err(format!("{what} id {i} is out of range: valid ids are 0..={}", names.len() - 1));
            }
            Err(_) => names
                .iter()
                .position(|n| n == it)
                .ok_or_else(|| format!("unknown {what} `{it}`: valid {what}s are {}", names.join(", ")))?,
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_unknown_names_list_the_valid_ones() {
        let names = region_names(19, None);
        assert_eq!(resolve(&["mouth".into(), "hair".into(), "10".into()], &names, "region").unwrap(), vec![10, 13]);
        let e = resolve(&["moustache".into()], &names, "region").unwrap_err();
        assert!(e.contains("moustache") && e.contains("upper_lip"), "{e}");
        assert!(resolve(&["19".into()], &names, "region").is_err());
        assert_eq!(region_names(20, None)[19], "unlabeled");
        assert_eq!(attribute_names(4, None)[1], "stop");
        assert_eq!(Preset::by_name("bdd").unwrap().image_size, (256, 512));
    }
}

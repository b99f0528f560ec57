//! Label files: the CelebA / CelebAMask-HQ attribute text (a count line, a line of names,
//! then `file v1 v2 ...` with -1/1), a BDD-OIA action JSON (`{"images": [{"file_name",
//! "id"}], "annotations": [{"category": [forward, stop, left, right, confuse]}]}`, as the
//! published loader reads it: images whose fifth action is set are left out), and a plain
//! CSV (`file,attr1,attr2,...`, values 0/1) for one's own data. Attributes are chosen by
//! name ([`LabelTable::select`]).

use std::path::{Path, PathBuf};

use crate::error::TrainError;

/// The BDD-OIA action names (the published decision model's outputs, in order).
pub const BDD_ACTIONS: [&str; 4] = ["move_forward", "stop", "turn_left", "turn_right"];

/// Which format a label file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFormat {
    /// CelebA / CelebAMask-HQ attribute text.
    CelebA,
    /// BDD-OIA action JSON.
    BddJson,
    /// `file,attr1,...` CSV.
    Csv,
}

/// A label file: attribute names and, per image file, one value in {0, 1} per attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelTable {
    /// The file read.
    pub path: PathBuf,
    /// Its format.
    pub format: LabelFormat,
    /// Attribute names, in file order.
    pub names: Vec<String>,
    /// `(file name, values)` per image, in file order.
    pub rows: Vec<(String, Vec<f32>)>,
}

impl LabelTable {
    /// Reads a label file, its format detected from its content.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(steex_io::error::io_err(path))?;
        let text = String::from_utf8(bytes).map_err(|_| bad(path, "not UTF-8 text".into()))?;
        Self::parse(path, &text)
    }

    /// Parses a label file's text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrainError> {
        let trimmed = text.trim_start();
        let first = trimmed.lines().next().unwrap_or("").trim();
        let (format, names, rows) = if trimmed.starts_with('{') {
            let (n, r) = parse_bdd(path, trimmed)?;
            (LabelFormat::BddJson, n, r)
        } else if first.parse::<usize>().is_ok() {
            let (n, r) = parse_celeba(path, trimmed)?;
            (LabelFormat::CelebA, n, r)
        } else if first.contains(',') {
            let (n, r) = parse_csv(path, trimmed)?;
            (LabelFormat::Csv, n, r)
        } else {
            return Err(bad(
                path,
                "not a label file: expected CelebA attribute text (a count line, then the names), \
                 a BDD-OIA action JSON, or a CSV `file,attr1,...`"
                    .into(),
            ));
        };
        if rows.is_empty() {
            return Err(bad(path, "no images listed".into()));
        }
        Ok(LabelTable { path: path.to_path_buf(), format, names, rows })
    }

    /// The column of each attribute in `wanted` (matched exactly, then ignoring case);
    /// an unknown name is an error listing the available ones.
    pub fn select(&self, wanted: &[String]) -> Result<Vec<usize>, TrainError> {
        if wanted.is_empty() {
            return Err(TrainError::Argument("no attributes chosen (--attributes A,B,...)".into()));
        }
        wanted
            .iter()
            .map(|w| {
                self.names
                    .iter()
                    .position(|n| n == w)
                    .or_else(|| self.names.iter().position(|n| n.eq_ignore_ascii_case(w)))
                    .ok_or_else(|| TrainError::UnknownAttribute {
                        name: w.clone(),
                        path: self.path.clone(),
                        available: self.names.join(", "),
                    })
            })
            .collect()
    }
}

fn bad(path: &Path, reason: String) -> TrainError {
    TrainError::Labels { path: path.to_path_buf(), reason }
}

type Parsed = (Vec<String>, Vec<(String, Vec<f32>)>);

fn parse_celeba(path: &Path, text: &str) -> Result<Parsed, TrainError> {
    let mut lines = text.lines().enumerate();
    let count: usize = lines.next().and_then(|(_, l)| l.trim().parse().ok()).unwrap_or(0);
    let names: Vec<String> =
        lines.next().map(|(_, l)| l.split_whitespace().map(String::from).collect()).unwrap_or_default();
    if names.is_empty() {
        return Err(bad(path, "line 2: expected the attribute names".into()));
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let mut f = line.split_whitespace();
        let Some(file) = f.next() else { continue };
        let values: Vec<f32> = f
            .map(|v| match v {
                "1" => Ok(1.0),
                "-1" | "0" => Ok(0.0),
                _ => Err(bad(path, format!("line {}: value `{v}` is not -1, 0 or 1", i + 1))),
            })
            .collect::<Result<_, _>>()?;
        if values.len() != names.len() {
            return Err(bad(path, format!("line {}: {} values for {} attributes", i + 1, values.len(), names.len())));
        }
        rows.push((file.to_string(), values));
    }
    if rows.len() != count {
        return Err(bad(path, format!("line 1 announces {count} images, {} listed", rows.len())));
    }
    Ok((names, rows))
}

fn parse_csv(path: &Path, text: &str) -> Result<Parsed, TrainError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<String> =
        lines.next().map(|(_, l)| l.split(',').map(|s| s.trim().to_string()).collect()).unwrap_or_default();
    if header.len() < 2 {
        return Err(bad(path, "line 1: expected `file,attr1,...`".into()));
    }
    let names = header[1..].to_vec();
    let mut rows = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(bad(path, format!("line {}: {} cells, the header has {}", i + 1, cells.len(), header.len())));
        }
        let values: Vec<f32> = cells[1..]
            .iter()
            .map(|v| match *v {
                "1" => Ok(1.0),
                "0" => Ok(0.0),
                _ => Err(bad(path, format!("line {}: value `{v}` is not 0 or 1", i + 1))),
            })
            .collect::<Result<_, _>>()?;
        rows.push((cells[0].to_string(), values));
    }
    Ok((names, rows))
}

fn parse_bdd(path: &Path, text: &str) -> Result<Parsed, TrainError> {
    #[derive(serde::Deserialize)]
    struct Image {
        file_name: String,
        id: usize,
    }
    #[derive(serde::Deserialize)]
    struct Annotation {
        category: Vec<f32>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        images: Vec<Image>,
        annotations: Vec<Annotation>,
    }
    let f: File = serde_json::from_str(text)
        .map_err(|e| bad(path, format!("not a BDD-OIA action file (images, annotations): {e}")))?;
    let mut images = f.images;
    images.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    let mut rows = Vec::new();
    for img in images {
        let a = f.annotations.get(img.id).ok_or_else(|| {
            bad(
                path,
                format!("image `{}` has id {}, past the {} annotations", img.file_name, img.id, f.annotations.len()),
            )
        })?;
        let c = &a.category;
        if c.len() < 4 || c.iter().any(|v| *v != 0.0 && *v != 1.0) {
            return Err(bad(path, format!("annotation {}: expected at least 4 actions of 0/1, got {c:?}", img.id)));
        }
        if c.len() > 4 && c[4] != 0.0 {
            continue; // "confuse": left out, as published
        }
        rows.push((img.file_name, c[..4].to_vec()));
    }
    Ok((BDD_ACTIONS.map(String::from).to_vec(), rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("labels.txt")
    }

    #[test]
    fn the_three_formats_read() {
        let celeba = "2\n5_o_Clock_Shadow Male Smiling \n000001.jpg -1  1 -1\n000002.jpg  1 -1  1\n";
        let t = LabelTable::parse(p(), celeba).unwrap();
        assert_eq!(t.format, LabelFormat::CelebA);
        assert_eq!(t.rows[1], ("000002.jpg".to_string(), vec![1.0, 0.0, 1.0]));
        assert_eq!(t.select(&["Smiling".into(), "male".into()]).unwrap(), vec![2, 1]);
        let csv = "file,cat,dog\na.png,1,0\nb.png,0,0\n";
        let t = LabelTable::parse(p(), csv).unwrap();
        assert_eq!((t.format, t.names.clone()), (LabelFormat::Csv, vec!["cat".to_string(), "dog".to_string()]));
        assert_eq!(t.rows[0].1, vec![1.0, 0.0]);
        let bdd = r#"{"images": [{"file_name": "b.jpg", "id": 1}, {"file_name": "a.jpg", "id": 0},
            {"file_name": "c.jpg", "id": 2}],
            "annotations": [{"category": [1, 0, 0, 1, 0]}, {"category": [0, 1, 0, 0, 0]},
            {"category": [0, 1, 0, 0, 1]}]}"#;
        let t = LabelTable::parse(p(), bdd).unwrap();
        assert_eq!(t.format, LabelFormat::BddJson);
        assert_eq!(
            t.rows,
            vec![("a.jpg".into(), vec![1.0, 0.0, 0.0, 1.0]), ("b.jpg".into(), vec![0.0, 1.0, 0.0, 0.0])]
        );
    }

    #[test]
    fn bad_files_and_names_are_refused_with_reasons() {
        let e = |t: &str| LabelTable::parse(p(), t).unwrap_err().to_string();
        assert!(e("hello world\n").contains("not a label file"));
        assert!(e("3\nA B\nx.jpg 1 -1\n").contains("announces 3"));
        assert!(e("1\nA B\nx.jpg 1 2\n").contains("`2`"));
        assert!(e("file,a\nx.png,1,0\n").contains("line 2"));
        assert!(e("{\"images\": 3}").contains("BDD-OIA"));
        let t = LabelTable::parse(p(), "file,cat,dog\na.png,1,0\n").unwrap();
        let err = t.select(&["cow".into()]).unwrap_err().to_string();
        assert!(err.contains("`cow`") && err.contains("cat, dog"), "{err}");
    }
}

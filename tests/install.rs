//! The install the README gives (`cargo install --path . --locked`, `cargo install --path
//! weights-convert --locked`), the binaries' `--version`, and `tools/requirements.txt`
//! against the imports of `tools/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn version_of(bin: &Path, name: &str) {
    let o = Command::new(bin).arg("--version").output().unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(o.status.success(), "{} --version: {}", bin.display(), String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("{name} {VERSION}"));
}

#[test]
fn binaries_report_their_version() {
    version_of(&bin_path("steex"), "steex");
    version_of(&bin_path("weights-convert"), "weights-convert");
}

/// The README's install lines (they must be there, as written), run into a temporary root:
/// a full release build, so ignored by default:
/// `cargo test --release --test install -- --ignored`.
#[test]
#[ignore = "a full release build (minutes): run with --ignored"]
fn readme_install_lines_install_both_binaries() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let lines = ["cargo install --path . --locked", "cargo install --path weights-convert --locked"];
    for l in lines {
        assert!(readme.contains(l), "README.md lacks `{l}`");
    }
    let root = tempfile::tempdir().unwrap();
    for l in lines {
        let mut args: Vec<&str> = l.split_whitespace().skip(1).collect();
        args.extend(["--root", root.path().to_str().unwrap()]);
        let mut cmd = Command::new(env!("CARGO"));
        // This build's compiler, also when the test binary runs outside cargo: a dependency's
        // own rust-toolchain.toml (convert_case pins 1.83.0) must not make rustup's proxy pick
        // another toolchain.
        let rustc = Path::new(env!("CARGO")).with_file_name("rustc");
        if rustc.is_file() && std::env::var_os("RUSTC").is_none() {
            cmd.env("RUSTC", rustc);
        }
        let o = cmd.args(&args).current_dir(&repo).output().unwrap();
        assert!(o.status.success(), "`{l}`: {}", String::from_utf8_lossy(&o.stderr));
    }
    version_of(&root.path().join("bin/steex"), "steex");
    version_of(&root.path().join("bin/weights-convert"), "weights-convert");
}

/// Python's standard modules the tools import (everything else must be in requirements.txt).
const STDLIB: [&str; 18] = [
    "argparse",
    "base64",
    "builtins",
    "collections",
    "json",
    "math",
    "os",
    "platform",
    "re",
    "resource",
    "shutil",
    "socket",
    "struct",
    "subprocess",
    "sys",
    "tempfile",
    "time",
    "urllib",
];

#[test]
fn tools_requirements_list_every_import() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tools = repo.join("tools");
    let reqs = std::fs::read_to_string(tools.join("requirements.txt")).unwrap();
    let listed: Vec<String> = reqs
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split(['>', '=', '<', '[']).next().unwrap_or("").trim().to_lowercase())
        .collect();
    // Module name -> PyPI name where they differ.
    let pypi = |m: &str| match m {
        "PIL" => "pillow".to_string(),
        "pytorch_fid" => "pytorch-fid".to_string(),
        m => m.to_lowercase(),
    };
    let local: Vec<String> = std::fs::read_dir(&tools)
        .unwrap()
        .filter_map(|e| e.unwrap().path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let mut seen = 0;
    for e in std::fs::read_dir(&tools).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "py") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let t = line.trim_start();
            let module = match t.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["import", m, ..] | ["from", m, "import", ..] => {
                    m.split('.').next().unwrap_or("").trim_end_matches(',')
                }
                _ => continue,
            }
            .to_string();
            if module.is_empty() || STDLIB.contains(&module.as_str()) || local.contains(&module) {
                continue;
            }
            seen += 1;
            assert!(listed.contains(&pypi(&module)), "{} imports {module}: not in tools/requirements.txt", p.display());
        }
    }
    assert!(seen > 5, "found only {seen} third-party imports: the scan is broken");
    // scipy comes in through pytorch-fid's Frechet distance.
    assert!(listed.contains(&"scipy".to_string()));
}

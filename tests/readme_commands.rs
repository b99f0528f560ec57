//! The README's commands as written: every `steex` and `weights-convert` line of its shell
//! blocks names a subcommand that exists and only flags that subcommand takes (read from its
//! `--help`), so a renamed or removed flag cannot leave the README behind. The commands that
//! work on files the tests can make run for real in the `cli_*` tests; the ones on the
//! published datasets and weights cannot run here.

mod common;

use std::path::Path;

use common::*;

/// `(binary, words)` of each command line in the README's `sh`/`bash` blocks.
fn readme_commands() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut rest = readme.as_str();
    while let Some(i) = rest.find("```") {
        let after = &rest[i + 3..];
        let Some(end) = after.find("```") else { break };
        let (lang, body) = after[..end].split_once('\n').unwrap_or(("", ""));
        rest = &after[end + 3..];
        if !matches!(lang.trim(), "sh" | "bash") {
            continue;
        }
        for line in body.replace("\\\n", " ").lines() {
            let line = line.split(" #").next().unwrap_or("").trim();
            for part in line.split("&&") {
                let part = part.trim();
                let part = match part.strip_prefix("cargo run --release -- ") {
                    Some(p) => format!("steex {p}"),
                    None => part.to_string(),
                };
                let words: Vec<String> = part.split_whitespace().map(String::from).collect();
                if let Some(bin) = words.first().filter(|b| *b == "steex" || *b == "weights-convert") {
                    out.push((bin.clone(), words[1..].to_vec()));
                }
            }
        }
    }
    out
}

/// Whether `help` lists `--flag` (not only a longer flag that starts with it).
fn flag_listed(help: &str, flag: &str) -> bool {
    help.match_indices(&format!("--{flag}"))
        .any(|(i, m)| !help[i + m.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

#[test]
fn every_readme_command_uses_subcommands_and_flags_that_exist() {
    let cmds = readme_commands();
    assert!(cmds.len() >= 30, "found only {} commands in the README: the scan is broken", cmds.len());
    let mut flags_checked = 0;
    for (bin, words) in &cmds {
        // The subcommand: one word, two for `steex train ...` and `steex prepare ...`.
        let mut sub: Vec<&str> = Vec::new();
        for w in words {
            let nested = sub.len() == 1 && bin == "steex" && matches!(sub[0], "train" | "prepare");
            if w.starts_with('-') || w == "..." || !(sub.is_empty() || nested) {
                break;
            }
            sub.push(w);
        }
        let mut args = sub.clone();
        args.push("--help");
        let o = run_bin(Path::new("."), bin, &args);
        let line = format!("{bin} {}", words.join(" "));
        assert!(
            o.status.success(),
            "`{line}`: `{bin} {}` fails: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        let help = String::from_utf8_lossy(&o.stdout).into_owned();
        for w in words {
            let w = w.trim_start_matches(['[', '(']).trim_end_matches([']', ')']);
            let Some(flag) = w.strip_prefix("--").map(|f| f.split('=').next().unwrap_or(f)) else { continue };
            assert!(flag_listed(&help, flag), "`{line}`: `{bin} {}` has no --{flag}", sub.join(" "));
            flags_checked += 1;
        }
    }
    assert!(flags_checked > 100, "only {flags_checked} flags checked");
    eprintln!("{} README commands, {flags_checked} flags checked", cmds.len());
}

#[test]
fn a_flag_the_binary_lacks_would_be_caught() {
    let help = String::from_utf8_lossy(&run_bin(Path::new("."), "steex", &["explain", "--help"]).stdout).into_owned();
    assert!(flag_listed(&help, "lambda-prox"));
    assert!(!flag_listed(&help, "lambda-proximity"), "a made-up flag");
    assert!(!flag_listed(&help, "lambda"), "the start of a real flag is not that flag");
    assert!(!flag_listed(&help, "masks"), "a flag of another command (explain-dir's)");
}

//! Man pages are generated from the clap definitions and committed: they must
//! be current. Completions must be valid scripts.

use crate::util::*;

#[test]
fn man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    vmtool(&["man", "--out", dir.path().to_str().unwrap()]).ok();
    let committed = repo_root().join("man");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.contains(&"vmtool.1".to_string()) && names.contains(&"vmtool-ls.1".to_string()));
    for n in &names {
        let fresh = std::fs::read_to_string(dir.path().join(n)).unwrap();
        let old = std::fs::read_to_string(committed.join(n)).unwrap_or_default();
        assert!(
            fresh == old,
            "man/{n} is stale: run `cargo run -- man --out man` and commit"
        );
    }
    let mut committed_names: Vec<_> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    committed_names.sort();
    assert_eq!(
        names, committed_names,
        "man/ has pages for commands that no longer exist"
    );
}

/// Every `vmtool completions SHELL` is a script the shell accepts.
#[test]
fn completions() {
    let bash = vmtool(&["completions", "bash"]).ok().stdout;
    assert!(bash.contains("complete ") && bash.contains("vmtool"));
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&bash)
        .status();
    if let Ok(st) = check {
        assert!(st.success(), "bash -n rejected the completion script");
    }
    for sh in ["zsh", "fish"] {
        assert!(vmtool(&["completions", sh]).ok().stdout.contains("vmtool"));
    }
}

/// Environment variables the code reads (`env::var("…")`, `var_os("…")`).
fn env_vars_read() -> std::collections::BTreeSet<String> {
    let mut vars = std::collections::BTreeSet::new();
    let mut stack = vec![repo_root().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for pat in ["var(\"", "var_os(\"", "env = \""] {
                for (at, _) in text.match_indices(pat) {
                    let rest = &text[at + pat.len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !name.is_empty() && rest[name.len()..].starts_with('"') {
                        vars.insert(name);
                    }
                }
            }
        }
    }
    vars
}

/// Every man page has EXAMPLES, ENVIRONMENT (every variable vmtool reads)
/// and SEE ALSO, and renders without warnings, hyphenation or notes run
/// together.
#[test]
fn man_pages_have_examples_environment_and_see_also() {
    let vars = env_vars_read();
    for must in ["VMTOOL_AMI", "VMTOOL_DB", "VMTOOL_SPOOL", "VMTOOL_NOW"] {
        assert!(vars.contains(must), "{must} not found in src: {vars:?}");
    }
    let dir = repo_root().join("man");
    let mut pages = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let roff = std::fs::read_to_string(&path).unwrap();
        pages += 1;
        let sections: Vec<&str> = roff
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .collect();
        for s in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "EXAMPLES",
            "ENVIRONMENT",
            "\"SEE ALSO\"",
        ] {
            assert!(
                sections.contains(&s),
                "{name} has no {s} section: {sections:?}"
            );
        }
        let env = &roff[roff.find(".SH ENVIRONMENT").unwrap()..];
        let env = &env[..env.find(".SH \"SEE ALSO\"").unwrap()];
        for v in &vars {
            assert!(
                env.contains(v.as_str()),
                "{name}: ENVIRONMENT does not name {v}"
            );
        }
        // Examples are vmtool command lines.
        let examples =
            &roff[roff.find(".SH EXAMPLES").unwrap()..roff.find(".SH ENVIRONMENT").unwrap()];
        assert!(examples.contains("\\fBvmtool"), "{name}: {examples}");
        // No hyphenation: option names and commands are never split.
        assert!(roff.contains("\n.nh\n"), "{name} hyphenates");
        let out = std::process::Command::new("groff")
            // Plain text: no bold or underline sequences.
            .args(["-k", "-man", "-Tutf8", "-ww", "-P-cbu"])
            .arg(&path)
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("groff (groff-base) renders the man pages");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{name}: {stderr}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let plain = text;
        assert!(
            !plain.contains('\u{2010}'),
            "{name} has a hyphenated word:\n{plain}"
        );
        if name == "vmtool-watch.1" {
            assert!(plain.contains("notify-send \"Voicemail\""), "{plain}");
            // The example after the list of variables is a line of its own.
            assert!(
                plain
                    .lines()
                    .any(|l| l.trim_start().starts_with("e.g. vmtool watch --exec")),
                "{plain}"
            );
        }
    }
    assert!(pages > 20);
}

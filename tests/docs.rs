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

#[test]
fn completions() {
    let bash = vmtool(&["completions", "bash"]).ok().stdout;
    assert!(bash.contains("vmtool") && bash.contains("--folder"));
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&bash)
        .status();
    if let Ok(st) = check {
        assert!(st.success(), "bash -n rejected the completion script");
    }
    for sh in ["zsh", "fish"] {
        assert!(!vmtool(&["completions", sh]).ok().stdout.is_empty());
    }
}

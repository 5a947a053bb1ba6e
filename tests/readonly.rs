//! Reading commands must not change the spool: same files, sizes and mtimes.

use crate::util::*;

#[test]
fn scans_change_nothing() {
    let sb = Sandbox::team2();
    // A lock and stray files must be seen, not touched.
    std::fs::write(sb.voicemail().join("compta/2202/INBOX/.lock"), "").unwrap();
    std::fs::write(sb.voicemail().join("compta/2202/INBOX/msg0005.wav"), "RIFF").unwrap();
    let before = tree_state(sb.path());
    for args in [
        vec!["ls"],
        vec!["--format", "json", "ls", "--new"],
        vec!["show", "compta"],
        vec!["show", "--explain", "2101@finance"],
        vec!["boxes", "--bytes"],
        vec!["boxes", "--like-asterisk"],
        vec!["count", "2202@compta"],
        vec!["show", "1795689208-00000008"],
    ] {
        let r = sb.run(&args);
        assert!(r.code == 0 || r.code == 1, "{args:?}: {}", r.stderr);
    }
    assert_eq!(before, tree_state(sb.path()));
}

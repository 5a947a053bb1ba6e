//! The bundled example spool: what the README's first command shows.

use crate::util::*;

#[test]
fn example_spool_lists_and_counts() {
    let sb = Sandbox::example();
    let rows = sb.run(&["--format", "json", "ls"]).ok().json_lines();
    assert_eq!(rows.len(), 12);
    assert!(rows
        .iter()
        .all(|r| r["state"] == "complete"
            && r["formats"] == serde_json::json!(["WAV", "gsm", "wav"])));
    assert!(rows.iter().any(|r| r["callerid"] == "Unknown"));
    assert!(rows.iter().any(|r| r["callerid_name"] == "Zoé Lambert"
        && r["folder"] == "Old"
        && r["urgent"] == true));
    // Owner names and the users.conf boxes Asterisk 22 and older create.
    let boxes = sb.run(&["--format", "json", "boxes"]).ok().json_lines();
    let b1102 = boxes
        .iter()
        .find(|b| b["box"] == "1102" && b["context"] == "finance")
        .unwrap();
    assert_eq!(b1102["owner"], "Bruno Petit");
    assert_eq!(b1102["urgent"], 1);
    assert!(boxes
        .iter()
        .any(|b| b["context"] == "default" && b["box"] == "1101" && b["directory"] == false));
    // 1102 has tz=european (Europe/Paris): dates are shown in that zone.
    let r = sb
        .run(&["--format", "json", "ls", "1102@finance/Urgent"])
        .ok()
        .json_lines();
    assert!(
        r[0]["date"].as_str().unwrap().ends_with("+02:00"),
        "{}",
        r[0]["date"]
    );
    // Every audio file of the sample is measured without problems.
    let shown = sb
        .run(&["--format", "json", "show", "finance", "compta"])
        .ok()
        .json_lines();
    assert_eq!(shown.len(), 12);
    for s in &shown {
        assert_eq!(s["problems"], serde_json::json!([]), "{}", s["path"]);
    }
}

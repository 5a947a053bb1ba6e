//! `convert --to flac|mp3|ogg`: files and `--stdout` that sox decodes, with
//! the caller and the date as tags that `soxi -a` reads.

use crate::util::*;
use std::process::Command;

const MSG: &str = "finance/2101/INBOX/1";

/// sox's decoding of `data` (type `t`) as 16-bit samples.
fn sox_decode(t: &str, data: &[u8], dir: &std::path::Path) -> Vec<u8> {
    let p = dir.join(format!("decode-me.{t}"));
    std::fs::write(&p, data).unwrap();
    let o = Command::new("sox")
        .arg(&p)
        .args(["-t", "s16", "-"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sox cannot read the {t}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[test]
fn convert_exports_flac_mp3_ogg_that_sox_decodes_with_tags() {
    let sb = Sandbox::team2();
    let out = sb.path().join("out");
    let stdout = |extra: &[&str]| {
        let o = sb
            .command()
            .args(["convert", "--utc", "--stdout", "--from-format", "wav"])
            .args(extra)
            .arg(MSG)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let pcm = sox_decode("wav", &stdout(&[]), sb.path());
    for f in ["flac", "mp3", "ogg"] {
        let r = sb
            .run(&[
                "convert",
                "--utc",
                "--from-format",
                "wav",
                "--to",
                f,
                "-o",
                out.to_str().unwrap(),
                MSG,
            ])
            .ok();
        let path = r.stdout.trim().to_string();
        assert!(path.ends_with(&format!("-Thomas_Girard.{f}")), "{path}");
        let tags = Command::new("soxi").args(["-a", &path]).output().unwrap();
        let tags = String::from_utf8_lossy(&tags.stdout).to_lowercase();
        assert!(tags.contains("artist=thomas girard"), "{f}: {tags}");
        assert!(tags.contains("2026-11-26t10:32:00"), "{f}: {tags}");
        assert!(
            tags.contains("title=voicemail for 2101@finance from thomas girard"),
            "{f}: {tags}"
        );
        let file = std::fs::read(&path).unwrap();
        // --stdout writes the same bytes.
        assert_eq!(stdout(&["--to", f]), file, "{f}");
        let decoded = sox_decode(f, &file, sb.path());
        match f {
            // Lossless: the samples come back bit for bit.
            "flac" => assert_eq!(decoded, pcm),
            // Lossy: the same length, give or take the codec's delay.
            _ => {
                let (a, b) = (decoded.len() as i64 / 2, pcm.len() as i64 / 2);
                assert!((a - b).abs() <= 2304, "{f}: {a} samples for {b}");
            }
        }
    }
    // The --name extension chooses too; a conflict with --to is refused.
    let r = sb
        .run(&[
            "convert",
            "-o",
            out.to_str().unwrap(),
            "--name",
            "{number}.ogg",
            MSG,
        ])
        .ok();
    let ogg = r.stdout.trim();
    assert!(ogg.ends_with(".ogg"), "{ogg}");
    sox_decode("ogg", &std::fs::read(ogg).unwrap(), sb.path());
    let r = sb.run(&["convert", "--to", "mp3", "--name", "x.flac", MSG]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = sb.run(&["convert", "--to", "aiff", MSG]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

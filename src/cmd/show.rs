//! `vmtool show`: every field of a message, its audio files and the problems
//! found; `--archive` shows archived messages.

use super::prelude::*;
use crate::archive;
use crate::scan::Noise;
use crate::scan::{MsgFiles, MsgState};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Message(s) to show; a box or folder shows each of its messages
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Add a plain sentence explaining each field
    #[arg(long)]
    pub explain: bool,
    /// Show dates in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
    /// Show messages of an archive made by `vmtool archive`
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
}

/// One message for `show`: files, metadata (or why not), audio facts.
fn show_one(
    setup: &Setup,
    mb: &MailboxId,
    folder: &Folder,
    files: &MsgFiles,
    a: &ShowArgs,
    out: &mut dyn Write,
    json: bool,
) -> Result<()> {
    let zone = setup.zone_for(mb, a.utc);
    let mut problems: Vec<String> = Vec::new();
    let meta = if files.txt {
        match setup.store.read_metadata(mb, folder, files.num) {
            Ok(m) => {
                problems.extend(m.problems());
                problems.extend(m.warnings.iter().cloned());
                Some(m)
            }
            Err(e) => {
                problems.push(format!("metadata unreadable: {e}"));
                None
            }
        }
    } else {
        None
    };
    match files.state() {
        MsgState::Phantom => problems.push(
            "phantom: .txt without audio; counted as a message but cannot be played, and it stops Asterisk's compaction".into(),
        ),
        MsgState::Orphan => problems.push(
            "orphan: audio without .txt; invisible to counts, and adopted by the next message given this number".into(),
        ),
        MsgState::Complete => {}
    }
    if folder.is_known()
        && folder == &Folder::Urgent
        && meta.as_ref().is_some_and(|m| !m.flag_urgent())
    {
        problems.push("in Urgent/ without flag=Urgent (still counted as urgent by MWI)".into());
    }
    let mut audio = Vec::new();
    for ext in &files.audio {
        let path = setup.store.spool().msg_file(mb, folder, files.num, ext);
        let size = std::fs::symlink_metadata(&path).map(|m| m.len()).ok();
        match setup.store.audio_info(mb, folder, files.num, ext) {
            Ok(info) => {
                for w in &info.warnings {
                    problems.push(format!("{}.{ext}: {w}", files.num.stem()));
                }
                if let (Some(d), Some(m)) = (
                    info.duration_secs(),
                    meta.as_ref().and_then(|m| m.duration()),
                ) {
                    // Asterisk truncates; more than 2 s apart means a damaged or foreign file.
                    if (d - m as f64).abs() > 2.0 {
                        problems.push(format!(
                            "{}.{ext}: audio lasts {d:.2} s but duration={m}",
                            files.num.stem()
                        ));
                    }
                }
                audio.push((
                    ext.clone(),
                    info.format.name(),
                    size.unwrap_or(info.bytes),
                    info.duration_secs(),
                    None,
                ));
            }
            Err(e) => {
                let why = match &e {
                    Error::Audio { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                problems.push(format!("{}.{ext}: {why}", files.num.stem()));
                audio.push((
                    ext.clone(),
                    crate::audio::AudioFormat::from_extension(ext).name(),
                    size.unwrap_or(0),
                    None,
                    Some(why),
                ));
            }
        }
    }
    let here = target::describe(&Target::Message(mb.clone(), folder.clone(), files.num));
    if json {
        let fields: serde_json::Map<String, serde_json::Value> = meta
            .as_ref()
            .map(|m| {
                m.fields()
                    .iter()
                    .map(|f| (f.key.clone(), serde_json::Value::String(f.value.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let row = setup
            .store
            .message_row(mb, folder, files, meta.as_ref(), zone);
        let audio_json: Vec<_> = audio
            .iter()
            .map(|(ext, fmt, size, dur, err)| {
                serde_json::json!({"extension": ext, "format": fmt, "bytes": size, "seconds": dur, "error": err})
            })
            .collect();
        let mut obj = serde_json::to_value(&row).map_err(|e| Error::Usage(e.to_string()))?;
        if let Some(o) = obj.as_object_mut() {
            o.insert("fields".into(), serde_json::Value::Object(fields));
            o.insert("audio".into(), serde_json::Value::Array(audio_json));
            o.insert("problems".into(), serde_json::json!(problems));
        }
        serde_json::to_writer(&mut *out, &obj).map_err(|e| out_err(e.into()))?;
        writeln!(out).map_err(out_err)?;
        return Ok(());
    }
    let st = setup.style;
    let state = match files.state() {
        MsgState::Complete => "complete",
        MsgState::Phantom => "phantom",
        MsgState::Orphan => "orphan",
    };
    writeln!(out, "{} ({state})", st.bold(&sanitize(&here))).map_err(out_err)?;
    writeln!(out, "  {}", setup.store.where_kept(mb, folder, files.num)).map_err(out_err)?;
    let source = setup.store.fields_source();
    if let Some(m) = &meta {
        if m.rewritten {
            writeln!(
                out,
                "  (this .txt was regenerated by Asterisk: ';!' header)"
            )
            .map_err(out_err)?;
        }
        writeln!(out, "  fields:").map_err(out_err)?;
        let width = m.fields().iter().map(|f| f.key.len()).max().unwrap_or(0);
        for f in m.fields() {
            writeln!(
                out,
                "    {:width$} = {}",
                sanitize(&f.key),
                sanitize(&f.value)
            )
            .map_err(out_err)?;
            if a.explain {
                let text = metadata::explain(&f.key)
                    .unwrap_or("Not a key Asterisk writes; kept as found.");
                writeln!(out, "    {:width$}   {}", "", text).map_err(out_err)?;
            }
        }
        writeln!(out, "  read as:").map_err(out_err)?;
        if let Some(c) = m.callerid() {
            let who = if c.is_unknown() {
                "no caller ID (Unknown)".to_string()
            } else {
                match (&c.name, &c.number) {
                    (Some(n), Some(num)) => format!("{n} <{num}>"),
                    (Some(n), None) => n.clone(),
                    (None, Some(num)) => num.clone(),
                    (None, None) => "-".into(),
                }
            };
            writeln!(out, "    caller:   {}", sanitize(&who)).map_err(out_err)?;
        }
        if let Some(t) = m.origtime() {
            let shown = zone
                .format(t, "%Y-%m-%d %H:%M:%S %Z")
                .unwrap_or_else(|| "?".into());
            writeln!(out, "    recorded: {shown} (origtime {t})").map_err(out_err)?;
        }
        if let Some(d) = m.duration() {
            writeln!(
                out,
                "    duration: {} ({d} s, from {source})",
                render::duration_text(d)
            )
            .map_err(out_err)?;
        }
        let state_word = if folder.is_new() {
            "new (unheard)"
        } else if folder == &Folder::Old {
            "old (heard)"
        } else {
            "saved in a folder"
        };
        writeln!(
            out,
            "    state:    {state_word}{}",
            if m.flag_urgent() { ", urgent" } else { "" }
        )
        .map_err(out_err)?;
    }
    writeln!(out, "  audio:").map_err(out_err)?;
    if audio.is_empty() {
        writeln!(out, "    none").map_err(out_err)?;
    }
    for (ext, fmt, size, dur, err) in &audio {
        let d = match (dur, err) {
            (Some(d), _) => render::seconds_text(*d),
            (None, Some(_)) => "cannot measure".into(),
            (None, None) => "?".into(),
        };
        writeln!(
            out,
            "    {}.{:6} {:6} {:>9} bytes  {d}",
            files.num.stem(),
            sanitize(ext),
            fmt,
            size
        )
        .map_err(out_err)?;
    }
    writeln!(out, "  problems:").map_err(out_err)?;
    if problems.is_empty() {
        writeln!(out, "    none").map_err(out_err)?;
    }
    for p in &problems {
        writeln!(out, "    {}", st.yellow(&sanitize(p))).map_err(out_err)?;
    }
    Ok(())
}

pub fn exec(setup: &Setup, a: &ShowArgs, out: &mut dyn Write, rep: &mut Reporter) -> Result<Exit> {
    if let Some(dir) = &a.archive {
        return show_archive(setup, a, dir, out, rep);
    }
    let json = setup.format == Format::Json;
    let mut shown = 0usize;
    let mut first = true;
    for t in setup.resolve_all(&a.targets, rep) {
        let boxes = match setup.mailboxes_of(&t) {
            Ok(b) => b,
            Err(e) => {
                rep.error(&e);
                continue;
            }
        };
        for mb in boxes {
            let folders = match &t {
                Target::Folder(_, f) | Target::Message(_, f, _) => vec![f.clone()],
                _ => setup.store.folders(&mb)?,
            };
            for folder in folders {
                let scan = match setup.store.scan_folder(&mb, &folder) {
                    Ok(s) => s,
                    Err(e) => {
                        rep.error(&e);
                        continue;
                    }
                };
                let mut hit = false;
                for files in &scan.messages {
                    if let Target::Message(_, _, n) = &t {
                        if files.num != *n {
                            continue;
                        }
                    }
                    hit = true;
                    if !first && !json {
                        writeln!(out).map_err(out_err)?;
                    }
                    first = false;
                    show_one(setup, &mb, &folder, files, a, out, json)?;
                    shown += 1;
                    if let Some(irr) = scan.irregular_of(files.num) {
                        let p = setup.store.spool().folder_dir(&mb, &folder).join(&irr.name);
                        let e = crate::fsutil::not_regular_err(irr.kind);
                        rep.error(&Error::io("read", p, e));
                    }
                }
                if let Target::Message(_, _, n) = &t {
                    if !hit {
                        rep.error(&Error::NotFound(format!(
                            "no message {} in {}",
                            n.stem(),
                            target::describe(&Target::Folder(mb.clone(), folder.clone()))
                        )));
                    }
                } else if !json && !scan.noise.is_empty() && !matches!(t, Target::Message(..)) {
                    for n in &scan.noise {
                        let why = match n {
                            Noise::Lock(_) => "lock file (Asterisk or vmtool is working here)",
                            Noise::Backup(_) => "backup left by an unfinished prepend-forward",
                            Noise::Prepend(_) => "prepend recording in progress or abandoned",
                            Noise::Stray(_, why) => why,
                            Noise::Foreign(_) => "not an Asterisk file",
                        };
                        rep.warn(&format!(
                            "{}: {} — {why}",
                            target::describe(&Target::Folder(mb.clone(), folder.clone())),
                            n.name()
                        ));
                    }
                }
            }
        }
    }
    Ok(rep.finish(shown))
}

/// `show --archive DIR SELECTION`: every field and file of archived messages,
/// with the checksums verified.
pub fn show_archive(
    setup: &Setup,
    a: &ShowArgs,
    dir: &Path,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let want = archive::matchers(&a.targets)?;
    let mut n = 0usize;
    archive::for_each_entry(dir, |e| {
        if !want.iter().any(|m| m.matches(&e)) {
            return Ok(());
        }
        n += 1;
        let problems: Vec<String> = e
            .files
            .iter()
            .filter_map(|f| {
                let p = match archive::entry_path(dir, &e, &f.name) {
                    Ok(p) => p,
                    Err(err) => return Some(err.to_string()),
                };
                match crate::fsutil::sha256_file(&p) {
                    Ok(s) if crate::fsutil::hex(&s) == f.sha256 => None,
                    Ok(_) => Some(format!("{}: checksum differs from the manifest", f.name)),
                    Err(err) => Some(format!("{}: {err}", f.name)),
                }
            })
            .collect();
        if setup.format == Format::Json {
            let mut v = serde_json::to_value(&e).map_err(|x| Error::Failed(x.to_string()))?;
            if let Some(o) = v.as_object_mut() {
                o.insert("problems".into(), serde_json::json!(problems));
            }
            writeln!(out, "{v}").map_err(out_err)?;
            return Ok(());
        }
        writeln!(
            out,
            "{} (archived from {}/{}/{}/msg{})",
            setup
                .style
                .bold(&sanitize(&dir.join(&e.dir).display().to_string())),
            sanitize(&e.row.context),
            sanitize(&e.row.mailbox),
            sanitize(&e.row.folder),
            e.row.number
        )
        .map_err(out_err)?;
        writeln!(out, "  fields:").map_err(out_err)?;
        let width = e.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &e.fields {
            writeln!(out, "    {:width$} = {}", sanitize(k), sanitize(v)).map_err(out_err)?;
            if a.explain {
                let text = crate::metadata::explain(k)
                    .unwrap_or("Not a key Asterisk writes; kept as found.");
                writeln!(out, "    {:width$}   {text}", "").map_err(out_err)?;
            }
        }
        writeln!(out, "  files:").map_err(out_err)?;
        for f in &e.files {
            let ext = f.name.split_once('.').map(|(_, x)| x).unwrap_or("");
            let secs = archive::entry_path(dir, &e, &f.name)
                .ok()
                .and_then(|p| crate::audio::probe_file(&p, ext).ok())
                .and_then(|i| i.duration_secs())
                .map(render::seconds_text)
                .unwrap_or_default();
            writeln!(
                out,
                "    {:16} {:>9} bytes  {secs}",
                sanitize(&f.name),
                f.size
            )
            .map_err(out_err)?;
        }
        writeln!(out, "  problems:").map_err(out_err)?;
        if problems.is_empty() {
            writeln!(out, "    none").map_err(out_err)?;
        }
        for p in &problems {
            writeln!(out, "    {}", sanitize(p)).map_err(out_err)?;
        }
        Ok(())
    })?;
    if n == 0 {
        rep.error(&Error::NotFound(format!(
            "nothing in {} matches",
            dir.display()
        )));
    }
    Ok(rep.finish(n))
}

//! `vmtool greeting ls|set|rm|expire|play|export`: a box's unavailable, busy,
//! name and temporary greetings, through the store's greeting operations.

use super::prelude::*;
use crate::audio::input::{self, Loudness};
use crate::store::greeting::{Greeting, Kind, SetOptions};
use clap::Subcommand;
use std::collections::HashMap;

pub const GREETING_HELP: &str = "\
Greetings (spec §1.4, §7.4): unavail (VoiceMail(…,u)), busy (VoiceMail(…,b)),
name (greet: the recorded name, played when busy or unavail is missing) and
temp (played instead of busy and unavail while it exists). On the file spool
each is one file per format of format= in the box directory (unavail.WAV,
unavail.gsm, …), with <name>.tmp.<ext> while the owner records one; in the SQL
table one row with msgnum -1 holding the first format only.

set writes every format: each is encoded and synced in the box's tmp/ first,
then renamed into place, so Asterisk never opens a half-written file; a set
killed half-way is finished by the next vmtool greeting command on the box (or
check --fix): every format is the new greeting, never a mix.

End of a temporary greeting (set temp --until DATE): kept in temp.vmtool-until
next to temp.<ext> in the box directory. Asterisk opens temp.<ext> only for the
extensions of its format modules, so it never reads that file, and removing the
greeting by phone leaves it alone; `greeting expire` (from cron) removes the
greeting once the date has passed, and `check` reports (--fix removes) an end
date left without a greeting. In the SQL table the date is the temp row's
category column (vmtool-until=EPOCH), a column Asterisk never reads for
greetings.

Cron: 5 0 * * *  asterisk  vmtool greeting expire

--until takes a date (2027-01-02, \"2027-01-02 08:00\", @EPOCH) or an age that
counts forward from now (2w, 10d).";

#[derive(Debug, Args)]
pub struct GreetingArgs {
    #[command(subcommand)]
    pub cmd: GreetingCmd,
}

#[derive(Debug, Subcommand)]
pub enum GreetingCmd {
    /// Per box: which greetings exist, formats, length, date, missing formats, .tmp. leftovers, temp end date
    Ls(LsArgs),
    /// Write a greeting from any audio file (wav, mp3, ogg, flac, Asterisk's formats) in every format of format=
    Set(SetArgs),
    /// Remove a greeting (every format; for temp also its end date)
    Rm(RmArgs),
    /// Remove temporary greetings whose --until date has passed (for cron)
    Expire(ExpireArgs),
    /// Play a greeting on the sound card
    Play(PlayArgs),
    /// Export a greeting as a standard WAV file (16-bit PCM, mono)
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Contexts or boxes (default: every box)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Show dates in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// TARGET KIND FILE (TARGET: a box or a context; left out with --all). KIND: unavail, busy, name, temp
    #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
    pub args: Vec<String>,
    /// Every box of the store
    #[arg(long)]
    pub all: bool,
    /// Scale to -19 LUFS (peaks at most -1 dBFS) before encoding
    #[arg(long)]
    pub normalize: bool,
    /// temp only: when `greeting expire` removes it (a date, or an age from now)
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Read --until in UTC instead of local time
    #[arg(long)]
    pub utc: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// TARGET KIND (TARGET: a box or a context; left out with --all)
    #[arg(value_name = "ARGS", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// Every box of the store
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// Contexts or boxes (default: every box)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// The box (box@context)
    #[arg(value_name = "BOX")]
    pub mailbox: String,
    /// unavail, busy, name or temp
    #[arg(value_name = "KIND", value_parser = Kind::parse)]
    pub kind: Kind,
    /// Output device: an ALSA PCM name or a description from `vmtool play --list-devices`
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Play this file of the greeting (an extension as on disk: wav, WAV, gsm, …)
    #[arg(long, value_name = "EXT")]
    pub from_format: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The box (box@context)
    #[arg(value_name = "BOX")]
    pub mailbox: String,
    /// unavail, busy, name or temp
    #[arg(value_name = "KIND", value_parser = Kind::parse)]
    pub kind: Kind,
    /// The WAV file to write (- for standard output)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Sample rate of the WAV (resampled), e.g. 16000 [default: the greeting's]
    #[arg(long, value_name = "HZ")]
    pub rate: Option<u32>,
    /// Export this file of the greeting (an extension as on disk)
    #[arg(long, value_name = "EXT")]
    pub from_format: Option<String>,
    /// Replace FILE if it exists
    #[arg(long)]
    pub force: bool,
}

pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &GreetingArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    match &a.cmd {
        GreetingCmd::Ls(a) => ls(setup, g, a, out, rep),
        GreetingCmd::Set(a) => set(setup, g, a, out, rep),
        GreetingCmd::Rm(a) => rm(setup, g, a, out, rep),
        GreetingCmd::Expire(a) => expire(setup, g, a, out, rep),
        GreetingCmd::Play(a) => play(setup, g, a, out, rep),
        GreetingCmd::Export(a) => export(setup, g, a, out, rep),
    }
}

fn formats(setup: &Setup) -> Vec<String> {
    setup
        .vmconf
        .as_ref()
        .map(|c| c.general.format.clone())
        .unwrap_or_else(|| vec!["wav".to_string()])
}

fn timeout(setup: &Setup, g: &GlobalArgs) -> Result<std::time::Duration> {
    Ok(super::lock_options(setup, g)?.timeout)
}

/// The boxes under TARGET arguments (none: every box); a folder or message
/// is refused, reported, and skipped.
fn boxes(setup: &Setup, targets: &[String], all: bool, rep: &mut Reporter) -> Vec<MailboxId> {
    let resolved = if all || targets.is_empty() {
        vec![Target::Spool]
    } else {
        setup.resolve_all(targets, rep)
    };
    let mut out = Vec::new();
    for t in resolved {
        if matches!(t, Target::Folder(..) | Target::Message(..)) {
            rep.error(&Error::Usage(format!(
                "greetings belong to a box, not to {}",
                target::describe(&t)
            )));
            continue;
        }
        match setup.mailboxes_of(&t) {
            Ok(v) => out.extend(v),
            Err(e) => rep.error(&e),
        }
    }
    out.dedup();
    out
}

/// Finishes a set a killed vmtool left on the box, saying so.
fn recover(setup: &Setup, mb: &MailboxId, t: std::time::Duration, rep: &mut Reporter) {
    match setup.store.recover_greetings(mb, t) {
        Ok(lines) => {
            for l in lines {
                rep.note(&l);
            }
        }
        Err(e) => rep.warn(&format!(
            "{mb}: cannot finish an interrupted greeting set: {e}"
        )),
    }
}

fn ls(
    setup: &Setup,
    g: &GlobalArgs,
    a: &LsArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let t = timeout(setup, g)?;
    let formats = formats(setup);
    let now = setup.env.now();
    let mut w = Table::new(&[
        "MAILBOX", "GREETING", "FORMATS", "LENGTH", "SET", "MISSING", "NOTES",
    ]);
    if setup.format == Format::Csv {
        writeln!(
            out,
            "context,box,greeting,formats,duration,date,missing,recording,until,problems"
        )
        .map_err(out_err)?;
    }
    let mut ok = 0;
    let listed = boxes(setup, &a.targets, false, rep);
    // Boxes in different zones: each date says its zone.
    let date_fmt = if setup.zones_differ(&listed, a.utc) {
        "%Y-%m-%d %H:%M %Z"
    } else {
        "%Y-%m-%d %H:%M"
    };
    for mb in listed {
        recover(setup, &mb, t, rep);
        let gs = match setup.store.greetings(&mb, &formats) {
            Ok(gs) => gs,
            Err(e) => {
                rep.error(&e);
                continue;
            }
        };
        ok += 1;
        let zone = setup.zone_for(&mb, a.utc);
        let date = |t: Option<i64>| t.and_then(|t| zone.format(t, date_fmt));
        if gs.is_empty() {
            match setup.format {
                Format::Json => {
                    let j = serde_json::json!({"context": mb.context.as_str(), "box": mb.mailbox(), "greeting": null});
                    writeln!(out, "{j}").map_err(out_err)?;
                }
                Format::Csv => writeln!(
                    out,
                    "{},{},,,,,,,,",
                    render::csv_text(mb.context.as_str()),
                    render::csv_text(mb.mailbox())
                )
                .map_err(out_err)?,
                Format::Table => w.row(vec![
                    mb.to_string(),
                    "none".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]),
            }
            continue;
        }
        for gr in &gs {
            let exts: Vec<&str> = gr.files.iter().map(|f| f.ext.as_str()).collect();
            let secs = duration(gr);
            let problems: Vec<String> = gr
                .files
                .iter()
                .filter_map(|f| f.problem.as_ref().map(|p| format!(".{}: {p}", f.ext)))
                .collect();
            let age_days = gr.set_at().map(|s| (now - s).max(0) / 86_400);
            match setup.format {
                Format::Json => {
                    let j = serde_json::json!({
                        "context": mb.context.as_str(),
                        "box": mb.mailbox(),
                        "greeting": gr.kind.name(),
                        "formats": exts,
                        "files": gr.files,
                        "duration": secs,
                        "set_at": gr.set_at(),
                        "date": gr.set_at().and_then(|t| zone.format(t, "%Y-%m-%dT%H:%M:%S%:z")),
                        "age_days": age_days,
                        "missing": gr.missing,
                        "recording": gr.recording,
                        "until": gr.until,
                        "until_date": gr.until.and_then(|t| zone.format(t, "%Y-%m-%dT%H:%M:%S%:z")),
                    });
                    writeln!(out, "{j}").map_err(out_err)?;
                }
                Format::Csv => writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{}",
                    render::csv_text(mb.context.as_str()),
                    render::csv_text(mb.mailbox()),
                    gr.kind.name(),
                    render::csv_text(&exts.join(" ")),
                    secs.map(|s| format!("{s:.3}")).unwrap_or_default(),
                    date(gr.set_at()).unwrap_or_default(),
                    render::csv_text(&gr.missing.join(" ")),
                    render::csv_text(&gr.recording.join(" ")),
                    date(gr.until).unwrap_or_default(),
                    render::csv_text(&problems.join("; ")),
                )
                .map_err(out_err)?,
                Format::Table => {
                    let mut notes = Vec::new();
                    if gr.kind == Kind::Temp && gr.exists() {
                        if let Some(d) = age_days {
                            notes.push(format!("{d} days old"));
                        }
                    }
                    if let Some(u) = date(gr.until) {
                        notes.push(format!("until {u}"));
                    }
                    if !gr.exists() {
                        notes.push("no greeting".into());
                    }
                    if !gr.recording.is_empty() {
                        notes.push(format!("recording: {}", gr.recording.join(" ")));
                    }
                    notes.extend(problems);
                    w.row(vec![
                        mb.to_string(),
                        gr.kind.name().into(),
                        exts.join(" "),
                        secs.map(seconds_cell).unwrap_or_default(),
                        date(gr.set_at()).unwrap_or_default(),
                        gr.missing.join(" "),
                        notes.join("; "),
                    ]);
                }
            }
        }
    }
    if setup.format == Format::Table {
        w.write(out, setup).map_err(out_err)?;
    }
    Ok(rep.finish(ok))
}

/// `12.3s`, and from an hour on `h:mm:ss` like every other duration.
fn seconds_cell(s: f64) -> String {
    if s >= 3600.0 {
        crate::render::duration_text(s as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// The length of a greeting: its longest file (codecs round down to frames).
fn duration(g: &Greeting) -> Option<f64> {
    g.files
        .iter()
        .filter_map(|f| f.duration)
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))))
}

/// `TARGET… KIND [FILE]` or, with --all, `KIND [FILE]`.
fn split_args(
    args: &[String],
    all: bool,
    with_file: bool,
) -> Result<(Option<&str>, Kind, Option<&str>)> {
    let want = usize::from(!all) + 1 + usize::from(with_file);
    let usage = if with_file {
        "give TARGET KIND FILE, or --all KIND FILE"
    } else {
        "give TARGET KIND, or --all KIND"
    };
    if args.len() != want {
        return Err(Error::Usage(usage.into()));
    }
    let (target, rest) = if all {
        (None, args)
    } else {
        (Some(args[0].as_str()), &args[1..])
    };
    let kind = Kind::parse(&rest[0]).map_err(Error::Usage)?;
    Ok((target, kind, rest.get(1).map(String::as_str)))
}

fn set(
    setup: &Setup,
    g: &GlobalArgs,
    a: &SetArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let (target, kind, file) = split_args(&a.args, a.all, true)?;
    let file = Path::new(file.unwrap_or_default());
    let now = setup.env.now();
    let until = match &a.until {
        None => None,
        Some(_) if kind != Kind::Temp => {
            return Err(Error::Usage(format!(
                "--until applies to the temp greeting only, not to {kind}"
            )))
        }
        Some(s) => Some(until_from(s, now, a.utc)?),
    };
    let mut pcm = input::read_file(file).map_err(|e| Error::Failed(e.to_string()))?;
    if pcm.samples.is_empty() {
        return Err(Error::Failed(format!(
            "{}: no audio in it; nothing was changed",
            file.display()
        )));
    }
    if a.normalize {
        let gain = input::normalize(&mut pcm, Loudness::default()).map_err(Error::Failed)?;
        if setup.verbose {
            rep.note(&format!("--normalize: {gain:+.1} dB"));
        }
    }
    let t = timeout(setup, g)?;
    let formats = formats(setup);
    let opts = SetOptions {
        formats: &formats,
        until,
        timeout: t,
    };
    let targets: Vec<String> = target.map(str::to_string).into_iter().collect();
    let mut cache: HashMap<u32, Vec<i16>> = HashMap::new();
    let mut ok = 0;
    for mb in boxes(setup, &targets, a.all, rep) {
        if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Exit::Interrupted);
        }
        let mut at = |rate: u32| -> std::result::Result<Vec<i16>, String> {
            if let Some(s) = cache.get(&rate) {
                return Ok(s.clone());
            }
            let s = input::resample(&pcm, rate)?;
            cache.insert(rate, s.clone());
            Ok(s)
        };
        recover(setup, &mb, t, rep);
        match setup.store.set_greeting(&mb, kind, &mut at, &opts) {
            Ok(files) => {
                ok += 1;
                report(setup, out, &mb, kind, "set", &files)?;
            }
            Err(e) => rep.error(&Error::Failed(format!("{mb}: {e}"))),
        }
    }
    Ok(rep.finish(ok))
}

/// `--until`: a date, or an age counted forward from now.
fn until_from(s: &str, now: i64, utc: bool) -> Result<i64> {
    let t = parse_when(s, now, utc)?;
    let is_age = crate::age::parse_age(s).ok().flatten().is_some();
    let t = if is_age { now + (now - t) } else { t };
    if t <= now {
        return Err(Error::Usage(format!(
            "--until {s}: that is not in the future"
        )));
    }
    Ok(t)
}

fn report(
    setup: &Setup,
    out: &mut dyn Write,
    mb: &MailboxId,
    kind: Kind,
    what: &str,
    files: &[String],
) -> Result<()> {
    let line = match setup.format {
        Format::Json => serde_json::json!({
            "context": mb.context.as_str(), "box": mb.mailbox(),
            "greeting": kind.name(), "result": what, "files": files,
        })
        .to_string(),
        Format::Csv => format!(
            "{},{},{},{what},{}",
            render::csv_text(mb.context.as_str()),
            render::csv_text(mb.mailbox()),
            kind.name(),
            render::csv_text(&files.join(" "))
        ),
        Format::Table => {
            if setup.quiet {
                return Ok(());
            }
            if files.is_empty() {
                format!("{mb}: {kind} greeting {what}")
            } else {
                format!("{mb}: {kind} greeting {what} ({} files)", files.len())
            }
        }
    };
    writeln!(out, "{}", sanitize(&line)).map_err(out_err)
}

fn rm(
    setup: &Setup,
    g: &GlobalArgs,
    a: &RmArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let (target, kind, _) = split_args(&a.args, a.all, false)?;
    let t = timeout(setup, g)?;
    let targets: Vec<String> = target.map(str::to_string).into_iter().collect();
    let mut ok = 0;
    for mb in boxes(setup, &targets, a.all, rep) {
        recover(setup, &mb, t, rep);
        match setup.store.remove_greeting(&mb, kind, t) {
            Ok(files) if files.is_empty() => {
                ok += 1;
                if !setup.quiet && setup.format == Format::Table {
                    rep.note(&format!("{mb}: no {kind} greeting to remove"));
                }
            }
            Ok(files) => {
                ok += 1;
                report(setup, out, &mb, kind, "removed", &files)?;
            }
            Err(e) => rep.error(&Error::Failed(format!("{mb}: {e}"))),
        }
    }
    Ok(rep.finish(ok))
}

fn expire(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ExpireArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let t = timeout(setup, g)?;
    let now = setup.env.now();
    let mut ok = 0;
    for mb in boxes(setup, &a.targets, false, rep) {
        recover(setup, &mb, t, rep);
        match setup.store.expire_greeting(&mb, now, t) {
            Ok(Some(until)) => {
                ok += 1;
                let when = setup
                    .zone_for(&mb, false)
                    .format(until, "%Y-%m-%d %H:%M")
                    .unwrap_or_default();
                report(
                    setup,
                    out,
                    &mb,
                    Kind::Temp,
                    &format!("expired (until {when})"),
                    &[],
                )?;
            }
            Ok(None) => ok += 1,
            Err(e) => rep.error(&Error::Failed(format!("{mb}: {e}"))),
        }
    }
    Ok(rep.finish(ok))
}

/// One box, resolved.
fn one_box(setup: &Setup, arg: &str, rep: &mut Reporter) -> Result<MailboxId> {
    let boxes = boxes(setup, &[arg.to_string()], false, rep);
    match boxes.as_slice() {
        [mb] => Ok(mb.clone()),
        [] => Err(Error::NotFound(format!("no box {arg}"))),
        _ => Err(Error::Usage(format!(
            "{arg} is more than one box: give box@context"
        ))),
    }
}

/// The greeting decoded, its warnings reported.
fn decode(
    setup: &Setup,
    g: &GlobalArgs,
    mb: &MailboxId,
    kind: Kind,
    from: Option<&str>,
    rep: &mut Reporter,
) -> Result<(PathBuf, String, u32, Vec<i16>)> {
    recover(setup, mb, timeout(setup, g)?, rep);
    let (path, ext, decoded) = setup.store.decode_greeting(mb, kind, from)?;
    let (rate, warnings, samples) = decoded.map_err(|source| Error::Audio {
        path: path.clone(),
        source,
    })?;
    if !setup.quiet {
        for w in warnings {
            rep.warn(&format!("{}: {w}", path.display()));
        }
    }
    Ok((path, ext, rate, samples))
}

fn play(
    setup: &Setup,
    g: &GlobalArgs,
    a: &PlayArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let mb = one_box(setup, &a.mailbox, rep)?;
    let (_, ext, rate, samples) = decode(setup, g, &mb, a.kind, a.from_format.as_deref(), rep)?;
    let label = format!("{mb} {} greeting ({ext}, {rate} Hz)", a.kind);
    super::play::play_pcm(
        setup,
        g,
        a.device.as_deref(),
        &label,
        rate,
        &samples,
        out,
        rep,
    )
}

fn export(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ExportArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let mb = one_box(setup, &a.mailbox, rep)?;
    let (_, _, rate, samples) = decode(setup, g, &mb, a.kind, a.from_format.as_deref(), rep)?;
    let (rate, samples) = match a.rate {
        Some(r) if r != rate => {
            if !(4000..=192_000).contains(&r) {
                return Err(Error::Usage("--rate takes 4000 to 192000 Hz".into()));
            }
            (
                r,
                super::convert::resample(&samples, rate, r).map_err(Error::Failed)?,
            )
        }
        _ => (rate, samples),
    };
    if a.output == Path::new("-") {
        let mut buf = std::io::Cursor::new(Vec::new());
        super::convert::write_wav(&mut buf, rate, &samples)
            .map_err(|e| Error::Failed(e.to_string()))?;
        out.write_all(buf.get_ref()).map_err(out_err)?;
        return Ok(Exit::Ok);
    }
    super::convert::write_wav_file(&a.output, rate, &samples, a.force)?;
    if !setup.quiet && setup.verbose {
        rep.note(&format!("wrote {}", a.output.display()));
    }
    Ok(Exit::Ok)
}

/// Rows padded into columns (cells escaped: box names are untrusted).
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| sanitize(c).into_owned()).collect());
    }

    fn write(&self, out: &mut dyn Write, setup: &Setup) -> std::io::Result<()> {
        let mut width = vec![0; self.head.len()];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |r: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in r.iter().zip(&width).enumerate() {
                if i + 1 == r.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}  "));
                }
            }
            s.trim_end().to_string()
        };
        if !setup.quiet {
            writeln!(out, "{}", setup.style.bold(&line(&self.head)))?;
        }
        for r in &self.rows {
            writeln!(out, "{}", line(r))?;
        }
        Ok(())
    }
}

//! Writes a realistic synthetic Asterisk voicemail spool, for load tests and demos.
//!
//! ```text
//! cargo run --release --example gen_spool -- --boxes 1000 --per-box 100 --seed 7 /tmp/spool
//! vmtool --spool /tmp/spool --voicemail-conf /tmp/spool/etc/voicemail.conf check
//! ```
//!
//! The tree is a function of the arguments only (`--seed`, never the clock): the
//! same command writes byte-identical files, whatever the thread count (only
//! `etc/asterisk.conf` names OUT's absolute path). It holds what Asterisk's
//! `app_voicemail` leaves behind (spec §1–§3):
//!
//! * `OUT/voicemail/<context>/<box>/{INBOX,Old,Urgent,Work,tmp}/`, folders created
//!   the way Asterisk creates them (INBOX and tmp/ at the first deposit, Old and
//!   Urgent at the first VoiceMailMain login, Work when a message is saved there);
//! * per message `msgNNNN.txt` in the exact byte layout of `leave_voicemail()`
//!   (written by `vmtool::metadata::NewMessage`), plus `.WAV`, `.gsm`, `.wav`;
//! * a few planted defects Asterisk really leaves: numbering gaps, phantoms
//!   (`.txt` without audio) and orphans (audio of a crashed deposit without `.txt`);
//! * `OUT/etc/voicemail.conf` listing every box and `OUT/etc/asterisk.conf`.
//!
//! Audio is Asterisk's own silence frames, written once per length into
//! `OUT/.templates/` and hard-linked into every message, so a million messages cost
//! little more than their `.txt` files. Lengths come in 4-second steps, so every
//! message's audio is within 1.5 s of its `duration=` (vmtool flags more than 2 s;
//! `--short-audio` uses one 2-second template instead). A template copy takes at
//! most 60,000 links (ext4 allows 65,000 per inode); when linking fails the file is
//! copied. Which copy a message links to may vary between runs; the bytes do not.

use clap::Parser;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};
use vmtool::callerid::CallerId;
use vmtool::metadata::NewMessage;
use vmtool::spool::{Context, Folder, MailboxId, MsgNum, Spool};

/// Generate a realistic synthetic Asterisk voicemail spool, deterministically.
#[derive(Debug, Parser)]
#[command(name = "gen_spool")]
struct Args {
    /// Number of mailboxes (spread over the contexts)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    boxes: u32,

    /// Average number of messages per mailbox (each box gets 0 to 2×M)
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u32).range(0..=4000))]
    per_box: u32,

    /// Number of voicemail contexts (at most --boxes)
    #[arg(long, value_name = "K", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    contexts: u32,

    /// Seed: the same arguments write the same tree
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,

    /// One 2-second template per format for every message, whatever its duration=
    /// (smallest apparent size; `vmtool show` then reports the length mismatch)
    #[arg(long)]
    short_audio: bool,

    /// Worker threads (the output does not depend on it)
    #[arg(long, value_name = "T", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,

    /// Output directory: created, or empty (astspooldir: voicemail/ goes inside)
    #[arg(value_name = "OUT")]
    out: PathBuf,
}

/// The "now" of the synthetic spool (the last deposit of the team-2 fixture):
/// fixed so that the output never depends on the clock.
const EPOCH: i64 = 1_795_689_296;
/// Messages are spread over the two years before [`EPOCH`].
const SPAN_DAYS: i64 = 730;
/// Links per template copy (ext4 allows 65,000 per inode).
const LINKS_PER_TEMPLATE: u64 = 60_000;
/// Audio extensions in the order `format=wav49|gsm|wav` writes them.
const FORMATS: [&str; 3] = ["WAV", "gsm", "wav"];
/// Template lengths: durations 4b+1..=4b+4 s share one audio of 4b+2.52 s.
const BUCKET_SECS: u64 = 4;
/// Audio is counted in MS-GSM blocks: 320 samples = 40 ms = 2 GSM frames.
const BLOCKS_PER_SEC: u32 = 25;
/// `--short-audio`: 2 s.
const SHORT_BLOCKS: u32 = 50;
/// Rates of the planted defects.
const GAP_PER_FOLDER: f64 = 0.03;
const ORPHAN_PER_FOLDER: f64 = 0.01;
const PHANTOM_PER_MESSAGE: f64 = 0.0015;

const CONTEXT_NAMES: [&str; 12] = [
    "sales",
    "support",
    "compta",
    "finance",
    "direction",
    "rh",
    "achats",
    "logistique",
    "juridique",
    "technique",
    "accueil",
    "marketing",
];

const FR_FIRST: &[&str] = &[
    "Hélène",
    "Chloé",
    "Zoé",
    "Émilie",
    "François",
    "Jérôme",
    "Loïc",
    "Gaël",
    "Anaïs",
    "Noémie",
    "Cédric",
    "Thérèse",
    "Benoît",
    "Raphaël",
    "Agnès",
    "Stéphane",
    "Frédéric",
    "Céline",
    "Maëlle",
    "Joël",
    "Sébastien",
    "Aurélie",
    "Clément",
    "Océane",
    "Léa",
    "Inès",
    "Marie",
    "Pierre",
    "Julien",
    "Camille",
    "Nicolas",
    "Sophie",
    "Thomas",
    "Lucas",
    "Emma",
    "Hugo",
    "Manon",
    "Antoine",
    "Claire",
    "Éric",
];
const FR_LAST: &[&str] = &[
    "Martin",
    "Bernard",
    "Durand",
    "Lefèvre",
    "Moreau",
    "Girard",
    "Rousseau",
    "Fontaine",
    "Chevalier",
    "Lemaître",
    "Gauthier",
    "Mercier",
    "Blanc",
    "Guérin",
    "Faure",
    "Boyer",
    "Roche",
    "Béranger",
    "Hébert",
    "Pâquet",
    "Loiseau",
    "Leroy",
    "Lambert",
    "Bonnet",
    "Dubois",
    "Noël",
    "Perrin",
    "Aubert",
    "Caron",
    "Thévenin",
    "Lécuyer",
    "Desprès",
    "Châtelain",
    "Benali",
];
const FR_COMPANIES: &[&str] = &[
    "Garage Moreau",
    "Cabinet Legrand",
    "Pharmacie du Marché",
    "Boulangerie Lefèvre",
    "Agence Immobilière Côté Sud",
    "Clinique Vétérinaire",
    "Mairie de Saint-Étienne",
    "École Jules Ferry",
    "Électricité Dupré",
    "Plomberie Gérard & Fils",
    "Hôtel du Lac",
    "Transports Léonard",
    "Crédit Mutuel",
    "Support Client",
    "Agence Bancaire Nord",
];
const ES_FIRST: &[&str] = &[
    "José", "María", "Begoña", "Íñigo", "Sofía", "Andrés", "Lucía", "Ramón", "Nuria", "Martín",
    "Inés", "Álvaro", "Raúl", "Pilar", "Jesús",
];
const ES_LAST: &[&str] = &[
    "Martínez",
    "Ibáñez",
    "Núñez",
    "Pérez",
    "García",
    "Fernández",
    "López",
    "Gómez",
    "Sánchez",
    "Muñoz",
    "Rodríguez",
    "Jiménez",
    "Peña",
    "Castaño",
];
const DE_FIRST: &[&str] = &[
    "Jürgen",
    "Björn",
    "Günther",
    "Jörg",
    "Sören",
    "Käthe",
    "Lukas",
    "Anna",
    "Uwe",
    "Bärbel",
    "Maximilian",
    "Hans",
    "Ute",
    "Stefan",
    "Jörn",
];
const DE_LAST: &[&str] = &[
    "Müller",
    "Schäfer",
    "Weiß",
    "Schröder",
    "Köhler",
    "Großmann",
    "Bäcker",
    "Fischer",
    "Hoffmann",
    "Krüger",
    "Jäger",
    "Schmidt",
    "Wagner",
    "Mößner",
];
/// CJK names with the country code their callers come from.
const CJK: &[(&str, &str)] = &[
    ("山田太郎", "81"),
    ("佐藤花子", "81"),
    ("鈴木一郎", "81"),
    ("高橋美咲", "81"),
    ("田中健", "81"),
    ("王伟", "86"),
    ("李娜", "86"),
    ("张敏", "86"),
    ("刘洋", "86"),
    ("陈静", "86"),
    ("김민준", "82"),
    ("이서연", "82"),
    ("박지훈", "82"),
];
/// Names that need Asterisk's `ast_escape_quoted()` (a `"` inside).
const QUOTED_NAMES: &[&str] = &[
    "Bar \"Le Central\"",
    "Café \"Chez Léon\"",
    "\"Dépannage 24h\"",
];
const TRUNKS: &[&str] = &["trunk-orange", "trunk-ovh", "sfr-sip", "pstn-gw1"];

/// `format=wav49|gsm|wav` silence, exactly as Asterisk pads with it:
/// `gsm_silence` of formats/format_gsm.c (one 33-byte GSM 06.10 frame).
const GSM_SILENCE: [u8; 33] = [
    0xD8, 0x20, 0xA2, 0xE1, 0x5A, 0x50, 0x00, 0x49, 0x24, 0x92, 0x49, 0x24, 0x50, 0x00, 0x49, 0x24,
    0x92, 0x49, 0x24, 0x50, 0x00, 0x49, 0x24, 0x92, 0x49, 0x24, 0x50, 0x00, 0x49, 0x24, 0x92, 0x49,
    0x24,
];
/// Bit widths of the 76 parameters of a GSM 06.10 frame (260 bits): 8 LARc,
/// then per subframe Nc, bc, Mc, xmaxc and 13 xmc.
fn gsm_param_widths() -> Vec<u32> {
    let mut w = vec![6, 6, 5, 5, 4, 4, 3, 3];
    for _ in 0..4 {
        w.extend([7, 2, 2, 6]);
        w.extend([3; 13]);
    }
    w
}

/// Two GSM frames in the MS-GSM (wav49) layout: the same parameters, packed
/// LSB-first into 65 bytes instead of MSB-first after a 0xD nibble.
/// (Asterisk's own `msgsm_silence` table in format_wav_gsm.c is this block without
/// its first byte, 0x20, and decodes to a full-scale DC offset; so the block is
/// built from `gsm_silence`, as `conv66()` would.)
fn msgsm_block(frame: &[u8; 33]) -> Vec<u8> {
    let widths = gsm_param_widths();
    let mut pos = 4; // after the magic nibble
    let mut params = Vec::with_capacity(widths.len());
    for &w in &widths {
        let mut v = 0u32;
        for _ in 0..w {
            let bit = (frame[pos / 8] >> (7 - pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            pos += 1;
        }
        params.push(v);
    }
    let mut block = vec![0u8; 65];
    let mut out = 0;
    for _ in 0..2 {
        for (&v, &w) in params.iter().zip(&widths) {
            for i in 0..w {
                block[out / 8] |= (((v >> i) & 1) as u8) << (out % 8);
                out += 1;
            }
        }
    }
    block
}

/// An I/O error with the action and the path, for messages.
trait At<T> {
    fn at(self, action: &str, path: &Path) -> Result<T, String>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, action: &str, path: &Path) -> Result<T, String> {
        self.map_err(|e| format!("cannot {action} {}: {e}", path.display()))
    }
}

/// One mailbox, decided before any file is written (so that voicemail.conf, the
/// template rotation and every worker agree without talking to each other).
#[derive(Debug)]
struct BoxPlan {
    context: usize,
    number: u32,
    name: String,
    pin: String,
    messages: u32,
}

#[derive(Debug)]
struct Plan {
    contexts: Vec<String>,
    /// Boxes by context, then number.
    boxes: Vec<BoxPlan>,
    /// `boxes[ctx_range[c].0 .. ctx_range[c].1]` are the boxes of context `c`.
    ctx_range: Vec<(usize, usize)>,
    maxmsg: u32,
}

/// Everything the workers share (read-only, plus progress counters).
struct Env<'a> {
    args: &'a Args,
    plan: &'a Plan,
    spool: Spool,
    templates: Templates,
    next_box: AtomicUsize,
    boxes_done: AtomicU64,
    messages_done: AtomicU64,
    abort: AtomicBool,
}

/// What one worker wrote.
#[derive(Debug, Default)]
struct Stats {
    box_dirs: u64,
    folder_dirs: u64,
    messages: u64,
    phantoms: u64,
    orphans: u64,
    orphan_files: u64,
    gaps: u64,
    urgent_flags: u64,
    txt_bytes: u64,
    links: u64,
    copies: u64,
    link_failures: u64,
    audio_bytes: u64,
    by_folder: [u64; 4],
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.box_dirs += o.box_dirs;
        self.folder_dirs += o.folder_dirs;
        self.messages += o.messages;
        self.phantoms += o.phantoms;
        self.orphans += o.orphans;
        self.orphan_files += o.orphan_files;
        self.gaps += o.gaps;
        self.urgent_flags += o.urgent_flags;
        self.txt_bytes += o.txt_bytes;
        self.links += o.links;
        self.copies += o.copies;
        self.link_failures += o.link_failures;
        self.audio_bytes += o.audio_bytes;
        for (a, b) in self.by_folder.iter_mut().zip(o.by_folder) {
            *a += b;
        }
    }
}

/// The message folders used, with their share of the messages (INBOX most).
const FOLDERS: [(Folder, f64); 4] = [
    (Folder::Inbox, 0.65),
    (Folder::Old, 0.28),
    (Folder::Urgent, 0.03),
    (Folder::Work, 0.04),
];
const INBOX: usize = 0;
const OLD: usize = 1;
const URGENT: usize = 2;
const WORK: usize = 3;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_spool: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.contexts > args.boxes {
        return Err(format!(
            "--contexts {} is more than --boxes {}: every context needs a box",
            args.contexts, args.boxes
        ));
    }
    let started = Instant::now();
    prepare_out(&args.out)?;
    let out = fs::canonicalize(&args.out).at("resolve", &args.out)?;
    let result = generate(args, &out, started);
    if result.is_err() {
        eprintln!(
            "gen_spool: {} is incomplete; remove it before trying again",
            out.display()
        );
    }
    result
}

/// OUT must be a new or empty directory: never write into someone's spool.
fn prepare_out(out: &Path) -> Result<(), String> {
    match fs::symlink_metadata(out) {
        Ok(md) if md.is_dir() => {
            let mut rd = fs::read_dir(out).at("read", out)?;
            if rd.next().is_some() {
                return Err(format!(
                    "{} is not empty; refusing to write into it (give a new or empty directory)",
                    out.display()
                ));
            }
            Ok(())
        }
        Ok(_) => Err(format!("{} exists and is not a directory", out.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).at("create directory", out)
        }
        Err(e) => Err(format!("cannot inspect {}: {e}", out.display())),
    }
}

fn generate(args: &Args, out: &Path, started: Instant) -> Result<(), String> {
    let plan = make_plan(args);
    write_conf(args, &plan, out)?;
    let templates = Templates::new(out, args.short_audio)?;
    let spool = Spool::new(out.join("voicemail"));
    mkdir(spool.root())?;
    for name in &plan.contexts {
        let ctx = Context::new(name).map_err(|e| e.to_string())?;
        mkdir(&spool.context_dir(&ctx))?;
    }
    let env = Env {
        args,
        plan: &plan,
        spool,
        templates,
        next_box: AtomicUsize::new(0),
        boxes_done: AtomicU64::new(0),
        messages_done: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    };
    let results: Vec<Result<Stats, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|_| s.spawn(|| worker(&env)))
            .collect();
        let mut last = Instant::now();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                eprintln!(
                    "gen_spool: {}/{} boxes, {} messages, {:.0} s",
                    env.boxes_done.load(Ordering::Relaxed),
                    plan.boxes.len(),
                    env.messages_done.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".into()))
            })
            .collect()
    });
    let mut total = Stats::default();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(st) => total.add(&st),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    summary(args, &plan, &env.templates, &total, out, started.elapsed());
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir(path).at("create directory", path)
}

/// The RNG of stream `stream` of this seed (0: the plan; box i: i + 1).
fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("non-empty list")
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A full name for a mailbox owner (and for internal callers).
fn person_name(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..100) {
        0..70 => format!("{} {}", pick(rng, FR_FIRST), pick(rng, FR_LAST)),
        70..80 => format!("{} {}", pick(rng, ES_FIRST), pick(rng, ES_LAST)),
        80..90 => format!("{} {}", pick(rng, DE_FIRST), pick(rng, DE_LAST)),
        _ => pick(rng, CJK).0.to_string(),
    }
}

/// Boxes, contexts and numbers: small, computed once from stream 0.
fn make_plan(args: &Args) -> Plan {
    let mut rng = rng_for(args.seed, 0);
    let k = args.contexts as usize;
    let n = args.boxes as usize;
    let contexts: Vec<String> = if k <= CONTEXT_NAMES.len() {
        CONTEXT_NAMES[..k].iter().map(|s| s.to_string()).collect()
    } else {
        let width = (k - 1).to_string().len().max(2);
        (0..k).map(|i| format!("ctx{i:0width$}")).collect()
    };
    // Uneven context sizes: one box each, the rest by random weights.
    let weights: Vec<u64> = (0..k).map(|_| rng.random_range(1..=4)).collect();
    let wsum: u64 = weights.iter().sum();
    let rest = (n - k) as u64;
    let mut sizes: Vec<usize> = weights
        .iter()
        .map(|w| 1 + (rest * w / wsum) as usize)
        .collect();
    let left = n - sizes.iter().sum::<usize>();
    for i in 0..left {
        sizes[i % k] += 1;
    }
    // Each context gets a block of numbers (1000-1999, 2000-2999, … or wider),
    // numbered upwards with a few unassigned extensions in between.
    let largest = sizes.iter().copied().max().unwrap_or(1) as u64;
    let mut stride: u64 = 1000;
    while stride < 2 * largest + 2 {
        stride *= 10;
    }
    let mut boxes = Vec::with_capacity(n);
    let mut ctx_range = Vec::with_capacity(k);
    for (c, &size) in sizes.iter().enumerate() {
        let start = boxes.len();
        let mut offset: u64 = 0;
        for j in 0..size {
            let remaining = (size - j) as u64;
            let step = if rng.random_bool(0.15) {
                rng.random_range(2..=4)
            } else {
                1
            };
            offset += if offset + step + remaining < stride {
                step
            } else {
                1
            };
            let messages = rng.random_range(0..=2 * args.per_box);
            let pin = if rng.random_bool(0.03) {
                String::new()
            } else {
                digits(&mut rng, 4)
            };
            boxes.push(BoxPlan {
                context: c,
                number: ((c as u64 + 1) * stride + offset) as u32,
                name: person_name(&mut rng),
                pin,
                messages,
            });
        }
        ctx_range.push((start, boxes.len()));
    }
    // Nothing Asterisk would refuse: every folder's highest number below maxmsg.
    let most = boxes.iter().map(|b| b.messages).max().unwrap_or(0);
    let maxmsg = (most + 10).div_ceil(100).max(1) * 100;
    Plan {
        contexts,
        boxes,
        ctx_range,
        maxmsg: maxmsg.min(9999),
    }
}

fn write_conf(args: &Args, plan: &Plan, out: &Path) -> Result<(), String> {
    let etc = out.join("etc");
    mkdir(&etc)?;
    let mut vm = String::new();
    let _ = writeln!(
        vm,
        "; voicemail.conf of a synthetic spool written by gen_spool\n\
         ; (--boxes {} --per-box {} --contexts {} --seed {})\n\
         [general]\n\
         format = wav49|gsm|wav\n\
         maxmsg = {}\n\
         maxsecs = 180\n\
         minsecs = 0\n\
         maxlogins = 3\n\
         review = no\n\
         saycid = no",
        args.boxes, args.per_box, args.contexts, args.seed, plan.maxmsg
    );
    for (c, name) in plan.contexts.iter().enumerate() {
        let _ = writeln!(vm, "\n[{name}]");
        let (a, b) = plan.ctx_range[c];
        for bp in &plan.boxes[a..b] {
            let _ = writeln!(vm, "{} => {},{},,,", bp.number, bp.pin, bp.name);
        }
    }
    let path = etc.join("voicemail.conf");
    fs::write(&path, vm).at("write", &path)?;
    let ast = format!(
        "; asterisk.conf of a synthetic spool written by gen_spool\n\
         [directories]\n\
         astetcdir => {}\n\
         astspooldir => {}\n",
        etc.display(),
        out.display()
    );
    let path = etc.join("asterisk.conf");
    fs::write(&path, ast).at("write", &path)
}

fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// `.WAV` (wav49): the 60-byte header of format_wav_gsm.c, then silence blocks.
fn wav49_bytes(blocks: u32) -> Vec<u8> {
    let data = blocks * 65;
    let mut v = Vec::with_capacity(60 + data as usize);
    v.extend_from_slice(b"RIFF");
    le32(&mut v, 52 + data);
    v.extend_from_slice(b"WAVEfmt ");
    le32(&mut v, 20);
    le16(&mut v, 49); // GSM 6.10
    le16(&mut v, 1);
    le32(&mut v, 8000);
    le32(&mut v, 1625);
    le16(&mut v, 65); // block align
    le16(&mut v, 0); // bits per sample
    le16(&mut v, 2); // extra bytes
    le16(&mut v, 320); // samples per block
    v.extend_from_slice(b"fact");
    le32(&mut v, 4);
    le32(&mut v, blocks * 320);
    v.extend_from_slice(b"data");
    le32(&mut v, data);
    let block = msgsm_block(&GSM_SILENCE);
    for _ in 0..blocks {
        v.extend_from_slice(&block);
    }
    v
}

/// `.gsm`: raw 33-byte GSM 06.10 frames of silence.
fn gsm_bytes(blocks: u32) -> Vec<u8> {
    GSM_SILENCE.repeat(2 * blocks as usize)
}

/// `.wav`: 8 kHz 16-bit mono PCM with the 44-byte header of format_wav.c.
fn pcm_bytes(blocks: u32) -> Vec<u8> {
    let data = blocks * 320 * 2;
    let mut v = Vec::with_capacity(44 + data as usize);
    v.extend_from_slice(b"RIFF");
    le32(&mut v, 36 + data);
    v.extend_from_slice(b"WAVEfmt ");
    le32(&mut v, 16);
    le16(&mut v, 1); // PCM
    le16(&mut v, 1);
    le32(&mut v, 8000);
    le32(&mut v, 16000);
    le16(&mut v, 2);
    le16(&mut v, 16);
    v.extend_from_slice(b"data");
    le32(&mut v, data);
    v.resize(44 + data as usize, 0);
    v
}

/// Links handed out for one template length, and its copies so far.
#[derive(Default)]
struct Bucket {
    links: u64,
    copies: Vec<Arc<[PathBuf; 3]>>,
}

/// The audio templates, made on first use: one set of three files per length
/// and per 60,000 messages linked to it.
struct Templates {
    dir: PathBuf,
    short: bool,
    buckets: Vec<Mutex<Bucket>>,
}

impl Templates {
    fn new(out: &Path, short: bool) -> Result<Templates, String> {
        let dir = out.join(".templates");
        mkdir(&dir)?;
        let n = if short { 1 } else { 180 / BUCKET_SECS as usize };
        Ok(Templates {
            dir,
            short,
            buckets: (0..n).map(|_| Mutex::default()).collect(),
        })
    }

    /// Length in 40-ms blocks of the audio of bucket `b`: 4b + 2.52 s.
    fn blocks(&self, b: usize) -> u32 {
        if self.short {
            SHORT_BLOCKS
        } else {
            (b as u32 * BUCKET_SECS as u32 + 2) * BLOCKS_PER_SEC + 13
        }
    }

    fn bucket_of(&self, duration: u64) -> usize {
        if self.short {
            0
        } else {
            (((duration.max(1) - 1) / BUCKET_SECS) as usize).min(self.buckets.len() - 1)
        }
    }

    /// The three files to link a message of this duration to (a new copy every
    /// 60,000 messages), and their total size.
    fn take(&self, duration: u64) -> Result<(Arc<[PathBuf; 3]>, u32), String> {
        let b = self.bucket_of(duration);
        let blocks = self.blocks(b);
        let mut bucket = self.buckets[b]
            .lock()
            .map_err(|_| "a worker thread panicked".to_string())?;
        if bucket.links % LINKS_PER_TEMPLATE == 0 {
            let k = bucket.copies.len();
            let ms = blocks * 40;
            let paths = FORMATS.map(|ext| self.dir.join(format!("silence-{ms:06}ms-{k:03}.{ext}")));
            let contents = [wav49_bytes(blocks), gsm_bytes(blocks), pcm_bytes(blocks)];
            for (path, bytes) in paths.iter().zip(&contents) {
                fs::write(path, bytes).at("write", path)?;
            }
            bucket.copies.push(Arc::new(paths));
        }
        bucket.links += 1;
        let paths = bucket.copies.last().cloned().ok_or("no template")?;
        Ok((paths, blocks))
    }

    /// Template files written and their bytes.
    fn written(&self) -> (u64, u64) {
        let (mut files, mut bytes) = (0, 0);
        for (b, m) in self.buckets.iter().enumerate() {
            if let Ok(bucket) = m.lock() {
                let n = bucket.copies.len() as u64;
                files += 3 * n;
                bytes += n * (0..3).map(|f| audio_len(f, self.blocks(b))).sum::<u64>();
            }
        }
        (files, bytes)
    }
}

/// Size of a template file: format index in [`FORMATS`], length in 40-ms blocks.
fn audio_len(format: usize, blocks: u32) -> u64 {
    let blocks = u64::from(blocks);
    match format {
        0 => 60 + blocks * 65,
        1 => blocks * 66,
        _ => 44 + blocks * 640,
    }
}

fn worker(env: &Env) -> Result<Stats, String> {
    let mut st = Stats::default();
    loop {
        if env.abort.load(Ordering::Relaxed) {
            break;
        }
        let i = env.next_box.fetch_add(1, Ordering::Relaxed);
        if i >= env.plan.boxes.len() {
            break;
        }
        let before = st.messages;
        if let Err(e) = gen_box(env, i, &mut st) {
            env.abort.store(true, Ordering::Relaxed);
            return Err(e);
        }
        env.boxes_done.fetch_add(1, Ordering::Relaxed);
        env.messages_done
            .fetch_add(st.messages - before, Ordering::Relaxed);
    }
    Ok(st)
}

/// A deposit time in the two years before [`EPOCH`], mostly on weekdays in office
/// hours (07:00-18:00 UTC).
fn deposit_time(rng: &mut ChaCha8Rng) -> i64 {
    let first_day = (EPOCH / 86_400) - SPAN_DAYS;
    let mut day = first_day + rng.random_range(0..=SPAN_DAYS);
    // 1970-01-01 was a Thursday: (day + 4) % 7 is 0 on Sundays, 6 on Saturdays.
    if matches!((day + 4) % 7, 0 | 6) && rng.random_bool(0.7) {
        day -= rng.random_range(1..=2);
    }
    let sec = if rng.random_bool(0.85) {
        rng.random_range(7 * 3600..18 * 3600)
    } else {
        rng.random_range(0..86_400)
    };
    (day * 86_400 + sec).min(EPOCH)
}

/// Mostly short messages, 1 to 180 s.
fn duration(rng: &mut ChaCha8Rng) -> u64 {
    match rng.random_range(0..100) {
        0..70 => rng.random_range(1..=40),
        70..95 => rng.random_range(41..=120),
        _ => rng.random_range(121..=180),
    }
}

fn fr_number(rng: &mut ChaCha8Rng) -> String {
    let first = pick(
        rng,
        &['1', '2', '3', '4', '5', '6', '6', '6', '7', '7', '9'],
    );
    format!("0{first}{}", digits(rng, 8))
}

/// A French number as the trunk presents it: national (0…) or E.164 (+33…).
fn fr_presented(rng: &mut ChaCha8Rng) -> String {
    let n = fr_number(rng);
    if rng.random_bool(0.3) {
        format!("+33{}", &n[1..])
    } else {
        n
    }
}

/// Who called, and how the call reached `VoiceMail()`.
struct Call {
    callerid: CallerId,
    context: &'static str,
    exten: String,
    priority: u32,
    callerchan: String,
}

fn make_call(rng: &mut ChaCha8Rng, plan: &Plan, bp: &BoxPlan, mailbox: &str, chan: u32) -> Call {
    let named = |name: String, number: String| CallerId {
        name: Some(name),
        number: Some(number),
    };
    let (a, b) = plan.ctx_range[bp.context];
    let roll = rng.random_range(0..1000);
    let (callerid, internal) = match roll {
        // A colleague from the same context.
        0..150 if b - a > 1 => {
            let other = &plan.boxes[rng.random_range(a..b)];
            if other.number == bp.number {
                (named(person_name(rng), fr_number(rng)), false)
            } else {
                (named(other.name.clone(), other.number.to_string()), true)
            }
        }
        0..320 => (
            named(
                format!("{} {}", pick(rng, FR_FIRST), pick(rng, FR_LAST)),
                fr_presented(rng),
            ),
            false,
        ),
        320..430 => (
            named(pick(rng, FR_COMPANIES).to_string(), fr_presented(rng)),
            false,
        ),
        430..480 => (
            named(
                format!("{} {}", pick(rng, ES_FIRST), pick(rng, ES_LAST)),
                format!("+34{}{}", pick(rng, &['6', '7', '9']), digits(rng, 8)),
            ),
            false,
        ),
        480..530 => (
            named(
                format!("{} {}", pick(rng, DE_FIRST), pick(rng, DE_LAST)),
                format!("+491{}{}", pick(rng, &['5', '6', '7']), digits(rng, 8)),
            ),
            false,
        ),
        530..560 => {
            let (name, cc) = *pick(rng, CJK);
            let number = match cc {
                "81" => format!("+81{}{}", pick(rng, &["90", "80", "70"]), digits(rng, 8)),
                "86" => format!("+8613{}", digits(rng, 9)),
                _ => format!("+8210{}", digits(rng, 8)),
            };
            (named(name.to_string(), number), false)
        }
        // Number only (no name from the network).
        560..830 => (
            CallerId {
                name: None,
                number: Some(fr_presented(rng)),
            },
            false,
        ),
        // No caller ID at all: Asterisk writes "Unknown".
        830..950 => (CallerId::default(), false),
        // Withheld numbers as SIP trunks present them.
        950..997 => (named("Anonymous".into(), "anonymous".into()), false),
        _ => (
            named(pick(rng, QUOTED_NAMES).to_string(), fr_number(rng)),
            false,
        ),
    };
    let endpoint = if internal {
        callerid.number.clone().unwrap_or_default()
    } else {
        pick(rng, TRUNKS).to_string()
    };
    let (context, exten, priority) = if rng.random_bool(0.1) {
        // Reached through a Gosub: the channel sits on extension s.
        ("sub-voicemail", "s".to_string(), rng.random_range(3..=4))
    } else {
        let context = if internal {
            "from-internal"
        } else if rng.random_bool(0.7) {
            "from-pstn"
        } else {
            "from-trunk"
        };
        let priority = *pick(rng, &[2, 2, 2, 2, 3, 4]);
        (context, mailbox.to_string(), priority)
    };
    Call {
        callerid,
        context,
        exten,
        priority,
        callerchan: format!("PJSIP/{endpoint}-{chan:08x}"),
    }
}

/// One mailbox: directories, messages, defects. Deterministic from (seed, index).
fn gen_box(env: &Env, index: usize, st: &mut Stats) -> Result<(), String> {
    let plan = env.plan;
    let bp = &plan.boxes[index];
    let mut rng = rng_for(env.args.seed, index as u64 + 1);
    let ctx = Context::new(&plan.contexts[bp.context]).map_err(|e| e.to_string())?;
    let mailbox = bp.number.to_string();
    let mb = MailboxId::new(ctx, &mailbox).map_err(|e| e.to_string())?;
    let spool = &env.spool;
    let n = bp.messages as usize;

    // Deposit times, strictly increasing, never after EPOCH.
    let mut times: Vec<i64> = (0..n).map(|_| deposit_time(&mut rng)).collect();
    times.sort_unstable();
    for k in (1..n).rev() {
        if times[k - 1] >= times[k] {
            times[k - 1] = times[k] - 1;
        }
    }
    // Folder of each message, in deposit order.
    let folder_of: Vec<usize> = (0..n)
        .map(|_| {
            let mut x: f64 = rng.random();
            FOLDERS
                .iter()
                .position(|(_, share)| {
                    x -= share;
                    x < 0.0
                })
                .unwrap_or(INBOX)
        })
        .collect();
    let mut sizes = [0usize; 4];
    for &f in &folder_of {
        sizes[f] += 1;
    }

    // Directories, as Asterisk would have created them.
    if n == 0 && rng.random_bool(0.6) {
        return Ok(()); // never received a message: no directory at all
    }
    let logged_in =
        n == 0 || sizes[OLD] + sizes[WORK] > 0 || sizes[URGENT] > 0 || rng.random_bool(0.7);
    mkdir(&spool.mailbox_dir(&mb))?;
    mkdir(&spool.tmp_dir(&mb))?;
    st.box_dirs += 1;
    let mut exists = [false; 4];
    exists[INBOX] = true;
    exists[OLD] = logged_in;
    exists[URGENT] = logged_in || sizes[URGENT] > 0;
    exists[WORK] = sizes[WORK] > 0;
    for (f, (folder, _)) in FOLDERS.iter().enumerate() {
        if exists[f] {
            mkdir(&spool.folder_dir(&mb, folder))?;
            st.folder_dirs += 1;
        }
    }

    // Planted gaps: (first index after the gap, size), a few percent of folders.
    let mut gap = [(usize::MAX, 0u16); 4];
    for f in 0..4 {
        if sizes[f] > 0 && rng.random_bool(GAP_PER_FOLDER) {
            let size = if rng.random_bool(0.8) {
                1
            } else {
                rng.random_range(2..=3)
            };
            gap[f] = (rng.random_range(0..sizes[f]), size);
            st.gaps += 1;
        }
    }

    // Asterisk's msg_id counter and channel counter, both global to the process:
    // they advance with other boxes' calls and restart with Asterisk.
    let mut id_ctr: u32 = rng.random_range(0..0x300);
    let mut chan_ctr: u32 = rng.random_range(0..0x2000);
    let mut next_index = [0usize; 4];
    let mut next_num = [0u16; 4];
    for k in 0..n {
        if rng.random_bool(0.004) {
            id_ctr = rng.random_range(0..8);
            chan_ctr = rng.random_range(0..0x20);
        } else {
            id_ctr += rng.random_range(1..=40);
            chan_ctr += rng.random_range(2..=120);
        }
        let f = folder_of[k];
        let idx = next_index[f];
        next_index[f] += 1;
        let num = idx as u16 + if idx >= gap[f].0 { gap[f].1 } else { 0 };
        next_num[f] = num + 1;
        let origtime = times[k];
        let call = make_call(&mut rng, plan, bp, &mailbox, chan_ctr);
        // A message left for another box and forwarded here keeps its .txt.
        let (a, b) = plan.ctx_range[bp.context];
        let origmailbox = if b - a > 1 && rng.random_bool(0.02) {
            plan.boxes[rng.random_range(a..b)].number.to_string()
        } else {
            mailbox.clone()
        };
        let exten = if origmailbox != mailbox && call.exten == mailbox {
            origmailbox.clone()
        } else {
            call.exten
        };
        let urgent = f == URGENT || (f == OLD && rng.random_bool(0.05));
        let dur = duration(&mut rng);
        let msg = NewMessage {
            origmailbox,
            context: call.context.to_string(),
            exten,
            rdnis: "unknown".into(),
            priority: call.priority,
            callerchan: call.callerchan,
            callerid: call.callerid,
            origtime,
            category: String::new(),
            msg_id: format!("{origtime}-{id_ctr:08x}"),
            flag: if urgent {
                "Urgent".into()
            } else {
                String::new()
            },
            duration: dur,
        };
        // Deposits are fresh files (0666); Old/Work hold copies made later.
        let fresh = f == INBOX || f == URGENT;
        let written = if fresh {
            origtime + dur as i64 + 1
        } else {
            (origtime + dur as i64 + rng.random_range(60..3 * 86_400)).min(EPOCH)
        };
        let phantom = rng.random_bool(PHANTOM_PER_MESSAGE);
        let folder = &FOLDERS[f].0;
        let num = MsgNum::new(num).ok_or("message number over 9998")?;
        write_txt(spool, &mb, folder, num, &msg, fresh, written, st)?;
        st.messages += 1;
        st.by_folder[f] += 1;
        st.urgent_flags += u64::from(urgent);
        if phantom {
            st.phantoms += 1;
        } else {
            let (src, blocks) = env.templates.take(dur)?;
            for (e, ext) in FORMATS.iter().enumerate() {
                let dst = spool.msg_file(&mb, folder, num, ext);
                place_audio(&src[e], &dst, audio_len(e, blocks), st)?;
            }
        }
    }

    // Orphans: audio of a deposit or copy that crashed before its .txt was renamed
    // in, at the next number. Formats are written in order, so some have only the
    // first one or two.
    for (f, (folder, _)) in FOLDERS.iter().enumerate() {
        if sizes[f] == 0 || !rng.random_bool(ORPHAN_PER_FOLDER) {
            continue;
        }
        let num = MsgNum::new(next_num[f]).ok_or("message number over 9998")?;
        let nformats = match rng.random_range(0..100) {
            0..60 => 3,
            60..85 => 2,
            _ => 1,
        };
        let (src, blocks) = env.templates.take(duration(&mut rng))?;
        for (e, ext) in FORMATS.iter().enumerate().take(nformats) {
            let dst = spool.msg_file(&mb, folder, num, ext);
            place_audio(&src[e], &dst, audio_len(e, blocks), st)?;
            st.orphan_files += 1;
        }
        st.orphans += 1;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_txt(
    spool: &Spool,
    mb: &MailboxId,
    folder: &Folder,
    num: MsgNum,
    msg: &NewMessage,
    fresh: bool,
    written: i64,
    st: &mut Stats,
) -> Result<(), String> {
    let path = spool.txt_path(mb, folder, num);
    let bytes = msg.to_metadata().to_asterisk_bytes();
    let mut file = File::create_new(&path).at("create", &path)?;
    file.write_all(&bytes).at("write", &path)?;
    if fresh {
        // leave_voicemail() chmods the final .txt to 0666 whatever the umask.
        file.set_permissions(Permissions::from_mode(0o666))
            .at("chmod", &path)?;
    }
    let mtime = UNIX_EPOCH + Duration::from_secs(written.max(0) as u64);
    file.set_modified(mtime).at("set the time of", &path)?;
    st.txt_bytes += bytes.len() as u64;
    Ok(())
}

/// Links `dst` to a template; copies when linking fails (and stops trying after
/// many failures: a file system without hard links).
fn place_audio(src: &Path, dst: &Path, len: u64, st: &mut Stats) -> Result<(), String> {
    if st.link_failures < 1000 {
        match fs::hard_link(src, dst) {
            Ok(()) => {
                st.links += 1;
                st.audio_bytes += len;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(format!("cannot link {}: already exists", dst.display()));
            }
            Err(_) => st.link_failures += 1,
        }
    }
    let n = fs::copy(src, dst).at("copy the template to", dst)?;
    st.copies += 1;
    st.audio_bytes += n;
    Ok(())
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn summary(args: &Args, plan: &Plan, tpl: &Templates, t: &Stats, out: &Path, took: Duration) {
    let audio_files = t.links + t.copies;
    let (template_files, template_bytes) = tpl.written();
    let secs = took.as_secs_f64();
    let date = |s: i64| vmtool::metadata::origdate_for(s).unwrap_or_else(|| s.to_string());
    eprintln!(
        "gen_spool: wrote {} in {secs:.1} s ({} thread(s), seed {}, {:.0} messages/s)",
        out.display(),
        args.threads,
        args.seed,
        t.messages as f64 / secs.max(1e-9)
    );
    eprintln!(
        "  contexts {}; boxes {} in voicemail.conf (maxmsg={}), {} with a directory; folder directories {}",
        plan.contexts.len(),
        plan.boxes.len(),
        plan.maxmsg,
        t.box_dirs,
        t.folder_dirs
    );
    eprintln!(
        "  messages {} (.txt): INBOX {}, Old {}, Urgent {}, Work {}; flag=Urgent on {}",
        t.messages,
        t.by_folder[INBOX],
        t.by_folder[OLD],
        t.by_folder[URGENT],
        t.by_folder[WORK],
        t.urgent_flags
    );
    eprintln!(
        "  planted: {} numbering gaps (folders), {} phantoms (.txt without audio), {} orphans ({} audio files without .txt)",
        t.gaps, t.phantoms, t.orphans, t.orphan_files
    );
    eprintln!(
        "  files: {} .txt + {audio_files} audio ({} hard links, {} copies) = {} in the spool; {template_files} template files, 2 conf files",
        t.messages,
        t.links,
        t.copies,
        t.messages + audio_files,
    );
    eprintln!(
        "  bytes: .txt {}, audio {} as read (apparent), written {} (.txt + templates{})",
        human(t.txt_bytes),
        human(t.audio_bytes),
        human(t.txt_bytes + template_bytes + if t.copies > 0 { t.audio_bytes } else { 0 }),
        if t.copies > 0 { " + copies" } else { "" }
    );
    eprintln!(
        "  origtimes {} .. {}; audio: silence, {}",
        date(EPOCH - SPAN_DAYS * 86_400),
        date(EPOCH),
        if args.short_audio {
            "2 s for every message (--short-audio)"
        } else {
            "as long as duration= (within 1.5 s)"
        }
    );
}

//! What the user typed: the clap definitions (also the source of the man pages
//! and shell completions). Nothing here runs anything.

use super::archive::{ArchiveArgs, PurgeArgs, RestoreArgs};
use super::boxes::BoxesArgs;
use super::change::{ChangeArgs, TransferArgs};
use super::check::CheckArgs;
use super::convert::ConvertArgs;
use super::count::CountArgs;
use super::deposit::DepositArgs;
use super::greeting::GreetingArgs;
use super::ls::LsArgs;
use super::migrate::MigrateArgs;
use super::play::PlayArgs;
use super::report::ReportArgs;
use super::resequence::ResequenceArgs;
use super::serve::ServeArgs;
use super::show::ShowArgs;
use super::unlock::UnlockArgs;
use super::watch::WatchArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

// Help texts shared by the long help, the subcommands and the man pages.
macro_rules! targets_text {
    () => {
        "Targets:
  ctx[/box[/Folder[/N]]]     e.g. compta, compta/1202, compta/1202/Old/3
  box[@ctx][/Folder[/N]]     e.g. 1202@compta, 1202@compta/INBOX/msg0003
  N is 3, 0003 or msg0003; folder names are case-insensitive. A bare word is a
  context when that directory exists, else a box searched in every context.
  A msg_id (e.g. 1795689259-0000000b) selects the message(s) carrying it."
    };
}
macro_rules! ages_text {
    () => {
        "Ages and dates (--older-than, --since, --until, --stale-after, unlock --older-than):
  an age counts back from now: 45s, 30min, 12h, 7d, 2w, 6mo, 1y (also 90days,
  \"6 months\", 1y6mo); mo and y are calendar months and years (the day of the
  month is clamped: 31 Aug - 6mo = 28 Feb); m alone is refused (min or mo?).
  A date is 2026-11-01, \"2026-11-01 08:00\" or 2026-11-01T08:00:00+01:00, in
  local time unless it says its zone (or --utc); @EPOCH is exact."
    };
}
macro_rules! exit_text {
    () => {
        "Exit status (all commands):
  0    success
  1    some items failed (the others were done; each failure was reported)
  2    usage error (bad arguments, ambiguous or unsafe target)
  3    not found (unknown context, box, folder or message)
  4    lock busy (Asterisk or another vmtool holds it: retry later)
  5    problems found (check)
  130  interrupted"
    };
}

const TARGETS: &str = targets_text!();
const AGES: &str = ages_text!();
const BOXES_HELP: &str = "\
Columns:
  MAILBOX          box@context
  OWNER            full name from voicemail.conf (or users.conf)
  NEW              INBOX + Urgent: new messages as `voicemail show users` and the
                   phones' lamps count them (`vmtool count` gives INBOX and Urgent apart)
  OLD              messages in Old
  URGENT           messages in Urgent (already included in NEW)
  MAXMSG           messages INBOX holds against maxmsg / maxmsg (FULL when reached)
  BYTES            disk use of every file of the box (--bytes)
  FOLDERS / STATE  messages per folder, the greetings the box has (greetings:unavail,busy,
                   name,temp), a temp greeting older than --temp-older-than days, then
                   FULL, not in voicemail.conf, no directory yet
JSON and CSV add inbox (INBOX alone), folders, full, configured, directory, greetings,
temp_age_days and owner_base64 (the owner's bytes in base64 when voicemail.conf has
them in another encoding than UTF-8, e.g. Latin-1; owner then shows U+FFFD).
--like-asterisk prints those bytes as they are, as Asterisk does.";
const REPORT_HELP: &str = "\
Needs attention (exit 1): an INBOX full (callers hear \"mailbox full\") or at --near-full
percent of maxmsg, an unheard message older than --unheard-older-than, a stale lock
(Asterisk drops messages for that folder after 5 s), problems `vmtool check` finds,
a temp greeting (played instead of unavail and busy) past its --until date or, with no
end date to come, set more than --temp-older-than days ago (Asterisk's tempgreetwarn
only reminds the owner, at login).
Nothing: exit 0. The text is for mail; --format json gives one document for monitoring.
Examples:
  vmtool report                                  # daily cron mail (MAILTO=admin)
  vmtool report compta --unheard-older-than 2d   # one context, stricter
  vmtool report --temp-older-than 30             # holiday greetings may stay a month
  vmtool --format json report --no-check         # for a monitoring probe";
const WATCH_HELP: &str = "\
A new message is reported once, as soon as Asterisk has renamed its .txt into
INBOX or Urgent and released the folder lock; renumbering, moves and unread are
not new messages. Output: one line per event, or one JSON object per line
(--format json: the ls fields plus \"event\" and, for moves, \"from_folder\").

With --all, greetings too (spec §7.4): \"greeting\" once a greeting's files are
renamed into the box directory (Asterisk records <name>.tmp.<ext> and renames
each format when the owner accepts it; vmtool greeting set does the same) or,
in SQL, its msgnum -1 row is new or different; \"greeting-removed\" once none is
left. JSON: context, box, event, greeting (unavail, busy, name, temp), formats.

--exec runs CMD with these environment variables (never through a shell):
  VMTOOL_EVENT (new, read, moved, deleted, mailbox-created, greeting,
  greeting-removed), VMTOOL_CONTEXT, VMTOOL_BOX, VMTOOL_FOLDER, VMTOOL_NUMBER,
  VMTOOL_FROM_FOLDER, VMTOOL_MSG_PATH, VMTOOL_CALLERID, VMTOOL_CALLERID_NAME,
  VMTOOL_CALLERID_NUM, VMTOOL_DURATION, VMTOOL_ORIGTIME, VMTOOL_DATE,
  VMTOOL_MSG_ID, VMTOOL_URGENT, VMTOOL_CALLERID_BASE64 (the callerid= bytes in
  base64 when they are not UTF-8, else empty), VMTOOL_GREETING,
  VMTOOL_GREETING_FORMATS
e.g. vmtool watch --exec notify-send \"Voicemail\"";
const ARCHIVE_HELP: &str = concat!(
    "Messages are selected by origtime (never file mtimes), from every folder except
INBOX and Urgent unless --include-new or --folder say otherwise. Each is copied
into DIR/<context>/<box>/<YYYY>/<MM>/<origtime>-<folder>-<NNNN>-<msg_id>/ with
every msgNNNN.* file verbatim, recorded in DIR/manifest.jsonl (fields, sizes,
SHA-256), verified, and only then deleted from the spool under Asterisk's lock,
without renumbering. A run killed at any point loses nothing; the next run
finishes the job and never archives a message twice. Two runs never overlap
(the second exits with status 4). Silent on success unless -v or --summary.
With voicemail in SQL (--db, odbcstorage) the archive is the same: the recording
as msgNNNN.<first format>, the .txt rebuilt in the file layout from the row, and
the row deleted in its own transaction once the manifest is synced.

Cron (examples/cron/vmtool-archive):
  17 3 * * *  asterisk  vmtool archive --older-than 90d --to /srv/voicemail-archive
(silent unless something fails: errors go to stderr, so cron mails only then)
systemd: examples/systemd/vmtool-archive.service and .timer

",
    ages_text!()
);
const PLAY_HELP: &str = concat!(
    "Plays through ALSA's default output device (--device NAME, --list-devices),
opened at the message's own rate and channel count so nothing is resampled
unless the device refuses it. The source file is the best the message has:
.wav, .wav16, .sln*, .WAV (wav49), .gsm, then G.711 (--from-format EXT to choose).
A box plays its new messages (Urgent, then INBOX); a folder, all of its messages.

On a terminal: the caller, the date and a progress line; keys: q stops, n skips
to the next message; Ctrl-C stops too. A message of INBOX or Urgent that was
played to the end is then marked heard exactly as `vmtool read` does (-> Old);
a stopped or skipped one stays new, and --keep-new never marks. (Asterisk marks
a message heard when playback starts; vmtool waits for the end.)
Without a usable device: one line and exit 1; `vmtool convert` exports instead.
Needs a build with the `play` feature (the default; it links libasound).

",
    targets_text!()
);
const DEPOSIT_HELP: &str = "\
The file is read (WAV of any rate, depth and channels; mp3, ogg, flac; Asterisk's
own formats), mixed down to mono, resampled only when its rate is not the
format's (8 kHz mono 16-bit input reaches the encoders sample for sample) and
written once per format of voicemail.conf's format= (wav49 as .WAV). The .txt
has Asterisk's keys in Asterisk's order, as msg_create_from_file() writes it;
duration is the first format's samples / 8000.

Each box is done on its own: staged in its tmp/, Asterisk's folder lock,
highest+1; a box holding maxmsg messages is refused (mailbox full) and the
batch goes on. A box that already holds, in any folder, a message with the
same callerid and the same first-format audio bytes is skipped: a broadcast
that stopped (crash, Ctrl-C) is finished by running it again.

Examples:
  vmtool deposit 2101@finance notice.wav --callerid 'Reception <100>'
  vmtool deposit finance announcement.mp3 --normalize --urgent
  vmtool deposit --all closed-friday.wav";

const CONVERT_HELP: &str = concat!(
    "Writes mono files at the source's rate or --rate (resampled with a band-limited
FFT resampler, never by repeating samples): 16-bit PCM WAV, FLAC (lossless), MP3
or Ogg Vorbis, chosen by --to or the --name extension; FLAC and Ogg carry Vorbis
comments, MP3 an ID3v2.4 tag: TITLE, ARTIST (the caller), DATE (origtime in the
box's zone), COMMENT (where the message was, its msg_id). The
source file is chosen as for play (.wav > .wav16 > .sln* > .WAV > .gsm > G.711)
unless --from-format EXT names one. A box or context converts every message in it.

File names come from --name TEMPLATE; fields: {context} {box} {folder} {number}
{date} (origtime, YYYYMMDD-HHMMSS, in the box's zone or UTC with --utc) {caller}
(name, else number, else unknown) {callerid_num} {msg_id} {duration} {format}.
Names are made filesystem-safe; an existing file is never replaced without
--force; each file is written to a temporary name in DIR and renamed when done.
--stdout writes a single message to standard output (for pipes).
Each failure is reported and the batch goes on (exit 1 at the end).

--add-format FMT writes into the spool instead: each message lacking FMT (a
format= token) gets it, encoded from its best audio as Asterisk would write it,
staged in the box's tmp/ and renamed in under the folder lock next to the
message, found by identity wherever Asterisk renumbered it; files that exist
are never rewritten. The ODBC table keeps one recording per message: refused.

e.g. vmtool convert compta/1202/INBOX -o /tmp/vm --rate 16000
     vmtool convert compta/1202/Old/0 --stdout | aplay
     vmtool convert compta/1202 --to mp3 -o /tmp/vm
     vmtool convert --add-format wav16 compta

",
    targets_text!()
);
const LS_LONG_HELP: &str = concat!(
    targets_text!(),
    "\n\n",
    ages_text!(),
    "

Dates come from origtime (never origdate) and are shown in the mailbox's tz zone
from voicemail.conf, else in local time (--utc for UTC). FLAGS: U = flag=Urgent
(it stays set after the message is heard), phantom = .txt without audio.

JSON (--format json): one object per line with these fields (also used by watch
and the archive manifest):
  context, box, folder, number    where the message is (number is NNNN)
  msg_id                          Asterisk's id (copies share it), or null
  callerid                        the raw callerid= text
  callerid_name, callerid_num     split the way Asterisk splits it, or null
  origtime                        epoch seconds (UTC), or null
  date                            RFC 3339 in the display zone
  duration                        seconds, from the .txt
  urgent                          flag=Urgent
  formats                         audio file extensions present (case kept)
  path                            the .txt file
  state                           complete or phantom
  callerid_base64                 the callerid= bytes in base64 when they are not
                                  UTF-8 (e.g. a Latin-1 name), else null
Text that is not UTF-8 shows U+FFFD in callerid and callerid_name (tables too);
callerid_base64 keeps the exact bytes. CSV has the same columns, in UTF-8, with
a header line (also when no message matches). Dates in a table are the box's
time; when the listed boxes are in different zones each date says its zone."
);
const LONG_HELP: &str = concat!(
    targets_text!(),
    "\n\n",
    ages_text!(),
    "\n\nEnvironment:
  VMTOOL_SPOOL   spool directory when --spool is not given
  VMTOOL_NOW     epoch seconds used instead of the clock for ages (--since 30d)
  VMTOOL_AMI     AMI to tell Asterisk about changes when --ami is not given
  VMTOOL_DB      voicemail SQL table URL when --db is not given
  NO_COLOR       disables colour (as --color never)

Untrusted spool:
  Message, lock and archive files are opened without following links and
  without blocking; only regular files are read, and never past their size at
  open (a .txt at most 1 MiB, audio 1 GiB, a configuration file 16 MiB;
  configuration files may be links to regular files, as Asterisk allows). A
  FIFO, socket, device, directory or link where a message file belongs is
  named, its message skipped, the run goes on (exit 1). check reports each one
  (special-file, symlink-outside, symlink, too-large); --fix leaves them alone.\n\n",
    exit_text!()
);

/// Manage Asterisk voicemail spools the way Asterisk itself does.
#[derive(Debug, Parser)]
#[command(
    name = "vmtool",
    version = env!("VMTOOL_VERSION"),
    about = "Manage Asterisk voicemail spools the way Asterisk itself does",
    long_about = "vmtool reads and manages the voicemail that Asterisk's app_voicemail keeps \
                  as files (<astspooldir>/voicemail/<context>/<box>/<Folder>/ msgNNNN.txt, \
                  .wav, .WAV, .gsm) or in its ODBC table: listings and counts that agree with \
                  Asterisk's own, every field of a message, and safe changes under Asterisk's \
                  folder locks.",
    after_help = exit_text!(),
    after_long_help = LONG_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes (listed after each command's own).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Spool directory: astspooldir (containing voicemail/) or the voicemail root itself
    /// [default: $VMTOOL_SPOOL, else astspooldir from asterisk.conf, else /var/spool/asterisk]
    #[arg(long, global = true, value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// asterisk.conf to read astspooldir, astetcdir, lockmode and runuser from
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "/etc/asterisk/asterisk.conf"
    )]
    pub asterisk_conf: PathBuf,

    /// voicemail.conf [default: voicemail.conf in astetcdir]
    #[arg(long, global = true, value_name = "FILE")]
    pub voicemail_conf: Option<PathBuf>,

    /// users.conf (Asterisk 22 and older make mailboxes from it) [default: beside voicemail.conf]
    #[arg(long, global = true, value_name = "FILE")]
    pub users_conf: Option<PathBuf>,

    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say which spool and configuration files are used
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Colour in tables: auto (terminal and no NO_COLOR), always, never
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Folder lock mode [default: lockmode from asterisk.conf, else lockfile]
    #[arg(long, global = true, value_enum)]
    pub lockmode: Option<LockModeArg>,

    /// Seconds to wait for a busy folder lock before giving up (exit 4); also e.g. 30s, 2min
    #[arg(long, global = true, value_name = "SECS", default_value = "5", value_parser = crate::age::parse_secs_f64)]
    pub lock_timeout: f64,

    /// AMI to tell Asterisk about changes: [user[:secret]@]host[:port]; give it once per server [default: $VMTOOL_AMI, else manager.conf]
    #[arg(long, global = true, value_name = "SPEC")]
    pub ami: Vec<String>,

    /// Voicemail kept in SQL (Asterisk's ODBC storage): postgres://USER@HOST[:PORT]/DB or mysql://USER[:PASS]@HOST[:PORT]/DB [default: $VMTOOL_DB, else odbcstorage in voicemail.conf via res_odbc.conf and odbc.ini]
    #[arg(long, global = true, value_name = "URL")]
    pub db: Option<String>,

    /// The voicemail table [default: odbctable in voicemail.conf, else voicemessages]
    #[arg(long, global = true, value_name = "NAME")]
    pub db_table: Option<String>,

    /// The start of every `dir` in the table, byte for byte as the servers write it [default: <astspooldir>/voicemail]
    #[arg(long, global = true, value_name = "PATH")]
    pub spool_prefix: Option<String>,

    /// unixODBC DSN file read for odbcstorage [default: $ODBCINI, else /etc/odbc.ini]
    #[arg(long, global = true, value_name = "FILE")]
    pub odbc_ini: Option<PathBuf>,

    /// manager.conf to find an AMI user with write=user [default: manager.conf in astetcdir]
    #[arg(long, global = true, value_name = "FILE")]
    pub manager_conf: Option<PathBuf>,

    /// Do not send VoicemailRefresh after changes (phones' lamps update at Asterisk's next poll, if pollmailboxes=yes)
    #[arg(long, global = true)]
    pub no_ami: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockModeArg {
    Lockfile,
    Flock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List messages (no target: the whole spool)
    #[command(after_help = TARGETS, after_long_help = LS_LONG_HELP)]
    Ls(LsArgs),
    /// Show every field of messages, their audio files and the problems found
    #[command(after_help = TARGETS)]
    Show(ShowArgs),
    /// One line per mailbox: configuration joined with the spool, Asterisk's counts
    #[command(after_help = BOXES_HELP)]
    Boxes(BoxesArgs),
    /// AMI MailboxCount numbers (urgent, new = INBOX only, old) for scripts
    Count(CountArgs),
    /// Move messages to another folder or box (DEST: Old, Work, compta/1202, 1202@compta/Old, …)
    #[command(after_help = TARGETS)]
    Mv(TransferArgs),
    /// Copy messages into another box or folder (the .txt verbatim, msg_id kept, as Asterisk forwards)
    #[command(visible_alias = "forward", after_help = TARGETS)]
    Cp(TransferArgs),
    /// Mark messages heard, as a first listen does: INBOX/Urgent -> Old
    #[command(after_help = TARGETS)]
    Read(ChangeArgs),
    /// Mark messages unheard: Old -> INBOX
    #[command(after_help = TARGETS)]
    Unread(ChangeArgs),
    /// Delete messages (into Deleted when backupdeleted is set, as Asterisk does)
    #[command(after_help = TARGETS)]
    Rm(ChangeArgs),
    /// Close numbering gaps in a folder (only on request: see the warning in the man page)
    Resequence(ResequenceArgs),
    /// Report problems (phantoms, orphans, gaps, stale locks, half-done moves, …); --fix repairs what is safe
    #[command(after_help = TARGETS)]
    Check(CheckArgs),
    /// A digest for a daily cron mail or a probe: unheard messages and their age, full boxes, stale locks, check problems; exit 1 when something needs attention
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
    /// Break a stale folder lock left by a crash (only locks older than --older-than)
    #[command(after_help = AGES)]
    Unlock(UnlockArgs),
    /// Move a whole file spool into the SQL table (--to-sql) or back (--to-files): verified, resumable
    Migrate(MigrateArgs),
    /// Move old messages into an archive directory (by origtime; cron-friendly)
    #[command(after_help = ARCHIVE_HELP)]
    Archive(ArchiveArgs),
    /// Put archived messages back into a box (import procedure: highest+1, files verbatim)
    #[command(after_help = AGES)]
    Restore(RestoreArgs),
    /// Delete old messages without archiving (by origtime); says what it removed unless -q
    #[command(after_help = AGES)]
    Purge(PurgeArgs),
    /// Show new messages the moment Asterisk finishes writing them (--all: reads, moves, deletes too)
    #[command(after_help = WATCH_HELP)]
    Watch(WatchArgs),
    /// Play messages on the sound card; a new message played to the end is marked heard (-> Old)
    #[command(after_help = PLAY_HELP)]
    Play(PlayArgs),
    /// Export messages as WAV, FLAC, MP3 or Ogg Vorbis (tagged), or one to standard output; or add a missing format to messages in the spool (--add-format)
    #[command(after_help = CONVERT_HELP)]
    Convert(ConvertArgs),
    /// Put an audio file into boxes as a new message, as Asterisk makes one (every format= format; several boxes or a context = a broadcast)
    #[command(after_help = DEPOSIT_HELP)]
    Deposit(DepositArgs),
    /// Voicemail in the browser: box owners log in with their PIN to list, play, mark, move and delete
    #[command(long_about = None, after_long_help = super::serve::LONG_HELP)]
    Serve(ServeArgs),
    /// Greetings of boxes: ls, set (any audio file, every format), rm, expire (cron), play, export
    #[command(after_help = super::greeting::GREETING_HELP)]
    Greeting(GreetingArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages into a directory
    #[command(hide = true)]
    Man {
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
}

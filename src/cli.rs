//! What the user typed: the clap definitions (also the source of the man pages
//! and shell completions). Nothing here runs anything.

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
  FOLDERS / STATE  messages per folder, then FULL, not in voicemail.conf, no directory yet
JSON and CSV add inbox (INBOX alone), folders, full, configured and directory.";
const WATCH_HELP: &str = "\
A new message is reported once, as soon as Asterisk has renamed its .txt into
INBOX or Urgent and released the folder lock; renumbering, moves and unread are
not new messages. Output: one line per event, or one JSON object per line
(--format json: the ls fields plus \"event\" and, for moves, \"from_folder\").

--exec runs CMD with these environment variables (never through a shell):
  VMTOOL_EVENT (new, read, moved, deleted, mailbox-created), VMTOOL_CONTEXT,
  VMTOOL_BOX, VMTOOL_FOLDER, VMTOOL_NUMBER, VMTOOL_FROM_FOLDER, VMTOOL_MSG_PATH,
  VMTOOL_CALLERID, VMTOOL_CALLERID_NAME, VMTOOL_CALLERID_NUM, VMTOOL_DURATION,
  VMTOOL_ORIGTIME, VMTOOL_DATE, VMTOOL_MSG_ID, VMTOOL_URGENT
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
const CONVERT_HELP: &str = concat!(
    "Writes standard WAV files: 16-bit PCM, mono, at the source's rate or --rate
(resampled with a band-limited FFT resampler, never by repeating samples). The
source file is chosen as for play (.wav > .wav16 > .sln* > .WAV > .gsm > G.711)
unless --from-format EXT names one. A box or context converts every message in it.

File names come from --name TEMPLATE; fields: {context} {box} {folder} {number}
{date} (origtime, YYYYMMDD-HHMMSS, in the box's zone or UTC with --utc) {caller}
(name, else number, else unknown) {callerid_num} {msg_id} {duration} {format}.
Names are made filesystem-safe; an existing file is never replaced without
--force; each file is written to a temporary name in DIR and renamed when done.
--stdout writes a single message as WAV to standard output (for pipes).
Each failure is reported and the batch goes on (exit 1 at the end).

e.g. vmtool convert compta/1202/INBOX -o /tmp/vm --rate 16000
     vmtool convert compta/1202/Old/0 --stdout | aplay

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
CSV has the same columns, with a header line."
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
    long_about = "vmtool reads and manages the voicemail that Asterisk's app_voicemail keeps in \
                  <astspooldir>/voicemail/<context>/<box>/<Folder>/msgNNNN.{txt,wav,WAV,gsm}: \
                  listings and counts that agree with Asterisk's own, every field of a message, \
                  and (in later commands) safe changes under Asterisk's folder locks.",
    after_help = exit_text!(),
    after_long_help = LONG_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
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
    /// Export messages as standard WAV files (16-bit PCM, mono), or one to standard output
    #[command(after_help = CONVERT_HELP)]
    Convert(ConvertArgs),
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

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Contexts, boxes, folders or messages (default: the whole spool)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Only these folders (repeatable, case-insensitive)
    #[arg(long, value_name = "FOLDER")]
    pub folder: Vec<String>,
    /// Only new messages (INBOX and Urgent)
    #[arg(long)]
    pub new: bool,
    /// Only messages recorded at or after this date or age: 7d, 12h, 2w, 6mo, 1y, 30min, 2026-11-01, "2026-11-01 08:00"
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only messages recorded before this date or age
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only messages whose caller name or number contains this text (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub caller: Option<String>,
    /// Show dates in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
    /// List an archive made by `vmtool archive` instead of the spool
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
}

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

#[derive(Debug, Args)]
pub struct BoxesArgs {
    /// Contexts or boxes to list, e.g. compta, 1202@compta, compta/1202 (default: all)
    #[arg(value_name = "TARGET")]
    pub contexts: Vec<String>,
    /// Add disk use (one stat per file)
    #[arg(long)]
    pub bytes: bool,
    /// Print exactly what Asterisk's CLI `voicemail show users [for CONTEXT]` prints
    #[arg(long, conflicts_with = "bytes")]
    pub like_asterisk: bool,
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Messages or folders, then the destination (a folder of the same box, or box[/Folder]; no folder = INBOX)
    #[arg(value_name = "TARGET… DEST", required = true, num_args = 2..)]
    pub args: Vec<String>,
    /// Print the plan and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Needed when a whole folder or more than one message is named
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Messages, folders or (read/unread) boxes
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Print the plan and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Needed by rm when a whole folder or more than one message is named
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("direction").required(true).args(["to_sql", "to_files"])))]
pub struct MigrateArgs {
    /// Contexts, boxes or folders (default: everything)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// From the file spool into the table given by --db / odbcstorage
    #[arg(long)]
    pub to_sql: bool,
    /// From the table back into the file spool
    #[arg(long)]
    pub to_files: bool,
    /// Print what would be copied and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Confirm: the messages leave their current storage
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ResequenceArgs {
    /// box[/Folder] (default: every folder of the box)
    #[arg(value_name = "BOX[/FOLDER]")]
    pub target: String,
    /// Print the renames and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Go on even when AMI is not configured, so open VoiceMailMain sessions cannot be checked
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Contexts, boxes or folders (default: the whole spool)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Repair what is safe: finish or undo half-done moves, break locks and remove staged copies of vmtools that are gone, quarantine phantoms, orphans and -bak leftovers (SQL store: also break this server's stale spool locks)
    #[arg(long)]
    pub fix: bool,
    /// Age after which a lock or a tmp/ leftover is stale: seconds, or e.g. 90s, 5min, 2h, 1d
    #[arg(long, value_name = "AGE", default_value = "60", value_parser = crate::age::parse_secs)]
    pub stale_after: u64,
    /// Count numbering gaps as problems (exit 5); by default they are information: Asterisk closes them itself the next time the folder is opened
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The folder whose lock to break, e.g. compta/1202/INBOX
    #[arg(value_name = "FOLDER")]
    pub target: String,
    /// Required: only a stale lock (older than --older-than, or taken by a vmtool that is gone) is ever broken
    #[arg(long, required = true)]
    pub stale: bool,
    /// Age after which a lock counts as stale: seconds, or e.g. 90s, 5min, 2h, 1d
    #[arg(long, value_name = "AGE", default_value = "60", value_parser = crate::age::parse_secs)]
    pub older_than: u64,
}

#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Contexts, boxes or folders (default: the whole spool)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Messages recorded (origtime) before this age or date: 90d, 6mo, 1y, 2w, 12h, 30min, 2026-11-01 (m alone is refused: min or mo)
    #[arg(long, value_name = "AGE", required = true)]
    pub older_than: String,
    /// Only these folders (default: every folder except INBOX and Urgent)
    #[arg(long, value_name = "FOLDER")]
    pub folder: Vec<String>,
    /// Take unheard messages (INBOX, Urgent) too
    #[arg(long)]
    pub include_new: bool,
    /// At most this many messages in this run
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
    /// Print what would be done and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print a one-line summary at the end: count, size, boxes, oldest and newest origtime ("would …" with --dry-run); a real purge prints it unless --quiet
    #[arg(long)]
    pub summary: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Archive directory (outside the spool, on a case-sensitive file system)
    #[arg(long, value_name = "DIR", required = true)]
    pub to: PathBuf,
    /// Copy only: leave the messages in the spool (a backup)
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Required: purged messages are gone for good
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Archive directory
    #[arg(long, value_name = "DIR", required = true)]
    pub from: PathBuf,
    /// Archived messages: ctx[/box[/Folder[/N]]], box@ctx[/Folder[/N]] or a msg_id (several allowed)
    #[arg(value_name = "SELECTION", required = true)]
    pub selection: Vec<String>,
    /// Destination box[/Folder] (default: where each message was archived from)
    #[arg(long, value_name = "BOX[/FOLDER]")]
    pub to: Option<String>,
    /// Only messages recorded at or after this date or age
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only messages recorded before this date or age
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Print what would be restored and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Contexts or boxes to watch (default: the whole spool, including boxes created later)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Also report messages read (INBOX/Urgent -> Old), moved, deleted, and new boxes
    #[arg(long)]
    pub all: bool,
    /// Exit after this many events (e.g. 1: wait for the next voicemail)
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
    /// Commands run at the same time at most, for --exec
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub jobs: usize,
    /// Events waiting for --exec at most (then the watch waits and warns; none is dropped)
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue: usize,
    /// Poll every SECS seconds (also e.g. 30s, 1min): how voicemail kept in SQL is watched (it has no change feed) [default on SQL: 2]
    #[arg(long, value_name = "SECS", value_parser = crate::age::parse_secs_f64)]
    pub poll: Option<f64>,
    /// Run a command per event, with the message in VMTOOL_* environment variables (no shell); must come last
    #[arg(long, value_name = "CMD [ARG]...", num_args = 1.., allow_hyphen_values = true)]
    pub exec: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// box@context (or a box name found in one context)
    #[arg(value_name = "BOX", required = true)]
    pub boxes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// Messages, folders or boxes (a box: its new messages, Urgent first)
    #[arg(value_name = "TARGET", required_unless_present = "list_devices")]
    pub targets: Vec<String>,
    /// Output device: an ALSA PCM name or a description from --list-devices [default: ALSA's default]
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// List the output devices and exit
    #[arg(long, conflicts_with = "device")]
    pub list_devices: bool,
    /// Do not mark new messages heard after playing them
    #[arg(long)]
    pub keep_new: bool,
    /// Play this audio file of each message (an extension as on disk: wav, WAV, gsm, …)
    #[arg(long, value_name = "EXT")]
    pub from_format: Option<String>,
    /// Show dates in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Messages, folders, boxes or contexts
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Directory to write the WAV files into (created if missing)
    #[arg(short = 'o', long = "out-dir", value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// Write one message as WAV to standard output instead of files
    #[arg(long, conflicts_with_all = ["out_dir", "name", "force"])]
    pub stdout: bool,
    /// Sample rate of the output: 8000, 16000, 44100 or 48000 [default: the source's]
    #[arg(long, value_name = "HZ", value_parser = parse_rate)]
    pub rate: Option<u32>,
    /// File name template (fields: see below)
    #[arg(
        long,
        value_name = "TEMPLATE",
        default_value = "{context}-{box}-{folder}-{date}-{caller}.wav"
    )]
    pub name: String,
    /// Replace existing files
    #[arg(long)]
    pub force: bool,
    /// Convert this audio file of each message (an extension as on disk: wav, WAV, gsm, …)
    #[arg(long, value_name = "EXT")]
    pub from_format: Option<String>,
    /// Dates in file names in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
}

/// Output rates `convert --rate` offers.
pub const CONVERT_RATES: [u32; 4] = [8000, 16_000, 44_100, 48_000];

fn parse_rate(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|r| CONVERT_RATES.contains(r))
        .ok_or_else(|| format!("\"{s}\" is not one of 8000, 16000, 44100, 48000"))
}

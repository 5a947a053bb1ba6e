//! `vmtool completions SHELL` and the hidden `vmtool man --out DIR`: both
//! generated from the clap definition, so they cannot drift from it. The
//! completion scripts call vmtool back for the candidates (clap_complete's
//! dynamic completion), which completes targets from the spool's directories.

use super::cli::Cli;
use super::prelude::*;
use std::path::Path;

/// The script for SHELL: it asks `vmtool` itself at each TAB, so options,
/// subcommands and the spool's contexts, boxes and folders are completed by
/// the binary that is installed (the script never goes stale).
pub fn exec(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<Exit> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    use clap_complete::Shell as S;
    let completer: &dyn EnvCompleter = match shell {
        S::Bash => &Bash,
        S::Zsh => &Zsh,
        S::Fish => &Fish,
        S::Elvish => &Elvish,
        S::PowerShell => &Powershell,
        other => {
            return Err(Error::Usage(format!(
                "no completion script for {other}: bash, zsh, fish, elvish or powershell"
            )))
        }
    };
    // Into memory first: a closed or full output is an error, not a panic.
    let mut script = Vec::new();
    completer
        .write_registration(COMPLETE_VAR, "vmtool", "vmtool", "vmtool", &mut script)
        .map_err(out_err)?;
    out.write_all(&script).map_err(out_err).map(|()| Exit::Ok)
}

/// Writes `vmtool.1` and one page per subcommand: clap_mangen's sections,
/// then the help's notes kept as written (tables stay tables), EXAMPLES,
/// ENVIRONMENT and SEE ALSO.
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The pages carry the release, not the commit `--version` names: they are committed.
    let mut cmd = <Cli as clap::CommandFactory>::command()
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true);
    cmd.build();
    write_page(&cmd, dir)
}

fn write_page(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    use clap_mangen::roff::Roff;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir)?;
    }
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    let man = clap_mangen::Man::new(cmd.clone());
    // Each part comes with roff's two-line preamble: kept once.
    let preamble = Roff::new().render().into_bytes();
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    // No hyphenation and a ragged right edge: option names, paths and
    // commands stay whole (no "no-tify-send").
    page.extend_from_slice(b".nh\n.ad l\n");
    let mut part = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut buf = Vec::new();
        render(&mut buf)?;
        page.extend_from_slice(buf.strip_prefix(preamble.as_slice()).unwrap_or(&buf));
        std::io::Result::Ok(())
    };
    part(&|w| man.render_name_section(w))?;
    part(&|w| man.render_synopsis_section(w))?;
    part(&|w| man.render_description_section(w))?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        part(&|w| man.render_options_section(w))?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        part(&|w| man.render_subcommands_section(w))?;
    }
    let mut roff = Roff::new();
    if let Some(notes) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        roff.control("SH", ["NOTES"]);
        notes_section(&mut roff, &notes.to_string());
    }
    man_sections(&mut roff, &name);
    part(&|w| roff.to_writer(w))?;
    if cmd.get_version().is_some() {
        part(&|w| man.render_version_section(w))?;
    }
    std::fs::write(dir.join(man.get_filename()), page)
}

/// Help text as roff, its layout kept: blank lines separate paragraphs,
/// indented lines (tables, lists, commands) are printed as written, the
/// other lines are filled.
fn notes_section(roff: &mut clap_mangen::roff::Roff, text: &str) {
    use clap_mangen::roff::roman;
    let mut literal = false;
    roff.control("PP", []);
    for line in text.lines() {
        if line.trim().is_empty() {
            if literal {
                roff.control("fi", []);
                literal = false;
            }
            roff.control("PP", []);
        } else if line.starts_with(' ') {
            if !literal {
                roff.control("nf", []);
                literal = true;
            }
            roff.text([roman(line)]);
        } else {
            if literal {
                roff.control("fi", []);
                literal = false;
            }
            // A heading ("Targets:") or a sentence: a line of its own.
            roff.control("br", []);
            roff.text([roman(line)]);
        }
    }
    if literal {
        roff.control("fi", []);
    }
}

/// Environment variables vmtool reads (every page: the global options
/// default from them).
const ENVIRONMENT: &[(&str, &str)] = &[
    ("VMTOOL_SPOOL", "Spool directory when --spool is not given."),
    ("VMTOOL_AMI", "The AMI to tell Asterisk about changes when --ami is not given: [user[:secret]@]host[:port]."),
    ("VMTOOL_DB", "Voicemail SQL table URL when --db is not given (postgres://… or mysql://…)."),
    ("VMTOOL_NOW", "Epoch seconds used instead of the clock for every age (--since 30d, --older-than 1y): reproducible runs and tests."),
    ("ODBCINI", "unixODBC DSN file read for odbcstorage when --odbc-ini is not given."),
    ("ODBCSYSINI", "Directory of odbc.ini when neither --odbc-ini nor ODBCINI is given (else /etc/odbc.ini)."),
    ("TZ", "The local zone: dates of boxes without a tz= zone, and dates typed without a zone."),
    ("NO_COLOR", "Set and not empty: no colour in tables (as --color never)."),
    ("_VMTOOL_COMPLETE", "Set by the completion scripts of `vmtool completions` when they ask vmtool for candidates; not for use by hand."),
    ("VMTOOL_TEST_KILL_AT, VMTOOL_TEST_PAUSE_AT, VMTOOL_TEST_PAUSE_FILE, VMTOOL_TEST_LOCK_LOG, VMTOOL_TEST_TRACE", "Hooks of vmtool's crash and lock tests (stop or pause at a step, log lock hold times, trace every rename, unlink and recovery); never set them on a live system."),
];

/// EXAMPLES and SEE ALSO of each page (`vmtool`, `vmtool-ls`, …), and the
/// ENVIRONMENT they all share.
fn man_sections(roff: &mut clap_mangen::roff::Roff, page: &str) {
    use clap_mangen::roff::{bold, roman};
    let (examples, see): (&[(&str, &str)], &[&str]) = match page {
        "vmtool" => (
            &[
                ("vmtool boxes", "Every mailbox with its owner and Asterisk's counts."),
                ("vmtool ls compta/1202 --new", "The unheard messages of one box."),
                ("vmtool --spool /srv/spool --format json ls", "Another spool, one JSON object per message."),
                ("vmtool check", "What is wrong in the spool (exit 5 when something is)."),
            ],
            &["vmtool-ls", "vmtool-boxes", "vmtool-check", "vmtool-archive", "vmtool-watch", "vmtool-report", "asterisk(8)"],
        ),
        "vmtool-ls" => (
            &[
                ("vmtool ls 1202@compta", "Every message of a box."),
                ("vmtool ls compta --since 7d --sort date --reverse", "A context's last week, newest first."),
                ("vmtool ls --urgent --limit 10", "Ten urgent messages, wherever they are."),
                ("vmtool --format csv ls finance > messages.csv", "A spreadsheet of a context."),
            ],
            &["vmtool-show", "vmtool-boxes", "vmtool-count"],
        ),
        "vmtool-show" => (
            &[
                ("vmtool show compta/1202/INBOX/0", "Every field, audio file and problem of one message."),
                ("vmtool show --explain 1202@compta/Old/1", "The same, each field explained."),
            ],
            &["vmtool-ls", "vmtool-check"],
        ),
        "vmtool-boxes" => (
            &[
                ("vmtool boxes compta", "The boxes of one context."),
                ("vmtool boxes --like-asterisk", "Byte for byte what `voicemail show users` prints."),
                ("vmtool --format json boxes --bytes", "For monitoring, with disk use."),
            ],
            &["vmtool-count", "vmtool-ls", "vmtool-report"],
        ),
        "vmtool-count" => (
            &[("vmtool count 1202@compta", "urgent, new and old, as AMI MailboxCount gives them.")],
            &["vmtool-boxes"],
        ),
        "vmtool-mv" => (
            &[
                ("vmtool mv compta/1202/INBOX/0 Old", "Into another folder of the same box."),
                ("vmtool mv --dry-run compta/1202/INBOX 1201@compta", "What moving a whole folder would do."),
            ],
            &["vmtool-cp", "vmtool-read", "vmtool-rm"],
        ),
        "vmtool-cp" => (
            &[("vmtool cp compta/1202/INBOX/0 1201@compta", "Forward a message to another box (msg_id kept).")],
            &["vmtool-mv"],
        ),
        "vmtool-read" => (
            &[("vmtool read 1202@compta", "Mark every new message of a box heard (INBOX and Urgent to Old).")],
            &["vmtool-unread", "vmtool-mv"],
        ),
        "vmtool-unread" => (
            &[("vmtool unread compta/1202/Old/0", "Back to INBOX, unheard.")],
            &["vmtool-read"],
        ),
        "vmtool-rm" => (
            &[("vmtool rm compta/1202/Old/1", "Delete one message (into Deleted when backupdeleted is set).")],
            &["vmtool-purge", "vmtool-archive"],
        ),
        "vmtool-resequence" => (
            &[("vmtool resequence 1202@compta/Old", "Close the numbering gaps of one folder.")],
            &["vmtool-check"],
        ),
        "vmtool-check" => (
            &[
                ("vmtool check", "Every problem of the spool, counted by kind."),
                ("vmtool check --fix compta", "Repair what is safe in one context."),
            ],
            &["vmtool-unlock", "vmtool-resequence", "vmtool-report"],
        ),
        "vmtool-report" => (
            &[
                ("vmtool report", "The daily digest (cron mails it; exit 1 when something needs attention)."),
                ("vmtool --format json report --no-check", "For a monitoring probe."),
            ],
            &["vmtool-check", "vmtool-boxes"],
        ),
        "vmtool-unlock" => (
            &[("vmtool unlock --stale compta/1202/INBOX", "Break the folder's lock if a crash left it.")],
            &["vmtool-check"],
        ),
        "vmtool-migrate" => (
            &[
                ("vmtool --db postgres://asterisk@db/asterisk migrate --to-sql --dry-run", "What moving the file spool into the table would copy."),
                ("vmtool --db postgres://asterisk@db/asterisk migrate --to-sql --yes", "Move it."),
            ],
            &["vmtool"],
        ),
        "vmtool-archive" => (
            &[
                ("vmtool archive --older-than 90d --to /srv/voicemail-archive", "Heard messages older than 90 days into the archive (cron: silent on success)."),
                ("vmtool archive --older-than 1y --dry-run --summary --to /srv/voicemail-archive", "What a year's cut would take."),
                ("vmtool ls --archive /srv/voicemail-archive", "The archive, on any machine."),
            ],
            &["vmtool-restore", "vmtool-purge"],
        ),
        "vmtool-restore" => (
            &[
                ("vmtool restore --from /srv/voicemail-archive compta/1202", "A box's archived messages back where they were."),
                ("vmtool restore --from /srv/voicemail-archive 1795689259-0000000b --to 1201@compta", "One message into another box."),
            ],
            &["vmtool-archive"],
        ),
        "vmtool-purge" => (
            &[
                ("vmtool purge --older-than 1y --dry-run", "What a purge would delete."),
                ("vmtool purge --older-than 6mo --yes", "Delete heard messages older than six calendar months."),
            ],
            &["vmtool-archive", "vmtool-rm"],
        ),
        "vmtool-watch" => (
            &[
                ("vmtool watch", "A line per new message as Asterisk finishes it."),
                ("vmtool --format json watch --all", "Every event as JSON."),
                ("vmtool watch --exec notify-send Voicemail", "A desktop notification per new message."),
            ],
            &["vmtool-ls"],
        ),
        "vmtool-play" => (
            &[("vmtool play 1202@compta", "The box's new messages, Urgent first; each played to the end is marked heard.")],
            &["vmtool-convert", "vmtool-read"],
        ),
        "vmtool-convert" => (
            &[
                ("vmtool convert compta/1202/INBOX -o /tmp/vm --rate 16000", "A folder as 16 kHz WAV files."),
                ("vmtool convert compta/1202/Old/0 --stdout | aplay", "One message to a pipe."),
            ],
            &["vmtool-play"],
        ),
        "vmtool-deposit" => (
            &[
                ("vmtool deposit 2101@finance notice.wav --callerid 'Reception <100>'", "A new message in one box."),
                ("vmtool deposit --all closed-friday.wav", "A broadcast to every box; run it again after a crash to finish it."),
            ],
            &["vmtool-greeting-set"],
        ),
        "vmtool-serve" => (
            &[("vmtool serve --listen 127.0.0.1:8080 --insecure-http", "Voicemail in the browser behind a TLS proxy.")],
            &["vmtool"],
        ),
        "vmtool-greeting" => (
            &[
                ("vmtool greeting ls compta", "The greetings of a context's boxes."),
                ("vmtool greeting set 1202@compta unavail greeting.wav", "A new unavailable greeting, in every format."),
            ],
            &["vmtool-greeting-ls", "vmtool-greeting-set", "vmtool-greeting-expire"],
        ),
        "vmtool-greeting-ls" => (
            &[("vmtool greeting ls 1202@compta", "A box's greetings, their formats and length.")],
            &["vmtool-greeting"],
        ),
        "vmtool-greeting-set" => (
            &[("vmtool greeting set 1202@compta busy busy.mp3", "The busy greeting from an mp3.")],
            &["vmtool-greeting", "vmtool-greeting-expire"],
        ),
        "vmtool-greeting-rm" => (
            &[("vmtool greeting rm 1202@compta temp", "Remove the temporary greeting.")],
            &["vmtool-greeting"],
        ),
        "vmtool-greeting-expire" => (
            &[("vmtool greeting expire", "Remove temporary greetings past their end date (daily cron).")],
            &["vmtool-greeting-set"],
        ),
        "vmtool-greeting-play" => (
            &[("vmtool greeting play 1202@compta unavail", "Hear a greeting.")],
            &["vmtool-greeting-export"],
        ),
        "vmtool-greeting-export" => (
            &[("vmtool greeting export 1202@compta unavail -o unavail.wav", "A greeting as a WAV file.")],
            &["vmtool-greeting-play"],
        ),
        "vmtool-completions" => (
            &[
                ("vmtool completions bash > /etc/bash_completion.d/vmtool", "Bash: options, subcommands, and contexts, boxes and folders of the spool."),
                ("vmtool completions zsh > \"${fpath[1]}/_vmtool\"", "Zsh."),
                ("vmtool completions fish > ~/.config/fish/completions/vmtool.fish", "Fish."),
            ],
            &["vmtool"],
        ),
        _ => (&[], &["vmtool"]),
    };
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (line, what) in examples {
            roff.control("TP", []);
            roff.text([bold(*line)]);
            roff.text([roman(*what)]);
        }
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (var, what) in ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*var)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut refs: Vec<String> = Vec::new();
    if page != "vmtool" && !see.contains(&"vmtool") {
        refs.push("vmtool(1)".into());
    }
    for s in see {
        refs.push(if s.contains('(') {
            s.to_string()
        } else {
            format!("{s}(1)")
        });
    }
    refs.push("/usr/share/doc/vmtool/README.md".into());
    roff.text([roman(refs.join(", "))]);
}

/// The variable the completion scripts set when they ask vmtool for the
/// candidates of the word being completed (clap_complete's `CompleteEnv`).
pub const COMPLETE_VAR: &str = "_VMTOOL_COMPLETE";

/// Answers a completion request from the scripts `vmtool completions` prints
/// (and exits) when `_VMTOOL_COMPLETE` is set; otherwise returns.
pub fn complete_if_asked() {
    clap_complete::CompleteEnv::with_factory(completing_command)
        .var(COMPLETE_VAR)
        .bin("vmtool")
        .completer("vmtool")
        .complete();
}

/// The command line definition with completers for spool names: every
/// target (TARGET, BOX, DEST) and every --folder.
fn completing_command() -> clap::Command {
    add_completers(<Cli as clap::CommandFactory>::command())
}

fn add_completers(mut cmd: clap::Command) -> clap::Command {
    use clap_complete::engine::ArgValueCompleter;
    let mut targets = Vec::new();
    let mut folders = Vec::new();
    for a in cmd.get_arguments() {
        let names = a.get_value_names().unwrap_or_default();
        let first = names.first().map(|n| n.as_str()).unwrap_or("");
        // `unlock --stale FOLDER` names a folder of the spool: a target too.
        if first.starts_with("TARGET")
            || first.starts_with("BOX")
            || a.is_positional() && first == "FOLDER"
        {
            targets.push(a.get_id().clone());
        } else if first == "FOLDER" {
            folders.push(a.get_id().clone());
        }
    }
    for id in targets {
        cmd = cmd.mut_arg(id, |a| a.add(ArgValueCompleter::new(complete_target)));
    }
    for id in folders {
        cmd = cmd.mut_arg(id, |a| a.add(ArgValueCompleter::new(complete_folder)));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, add_completers);
    }
    cmd
}

/// The words being completed (after the `--` the scripts pass).
fn command_words() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .skip_while(|a| a != "--")
        .skip(1)
        .collect()
}

/// The value of `--NAME X` or `--NAME=X` among the words, the last one.
fn option_value(words: &[std::ffi::OsString], name: &str) -> Option<PathBuf> {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    let mut found = None;
    for (i, w) in words.iter().enumerate() {
        let w = w.to_string_lossy();
        if w == long {
            found = words.get(i + 1).map(PathBuf::from);
        } else if let Some(v) = w.strip_prefix(&eq) {
            found = Some(PathBuf::from(v));
        }
    }
    found
}

/// The spool the command being typed would use: --spool, $VMTOOL_SPOOL,
/// astspooldir of asterisk.conf, /var/spool/asterisk (as `Setup::discover`).
fn typed_spool() -> crate::store::file::FileStore {
    let words = command_words();
    let dir = option_value(&words, "spool")
        .or_else(|| std::env::var_os("VMTOOL_SPOOL").map(PathBuf::from))
        .or_else(|| {
            let conf = option_value(&words, "asterisk-conf")
                .unwrap_or_else(|| PathBuf::from("/etc/asterisk/asterisk.conf"));
            crate::config::AsteriskConf::load(&conf).ok()?.astspooldir
        })
        .unwrap_or_else(|| PathBuf::from("/var/spool/asterisk"));
    crate::store::file::FileStore::new(crate::spool::Spool::from_dir(&dir))
}

fn candidates(
    values: impl IntoIterator<Item = String>,
) -> Vec<clap_complete::engine::CompletionCandidate> {
    values
        .into_iter()
        .map(clap_complete::engine::CompletionCandidate::new)
        .collect()
}

/// `--folder`: the folders Asterisk knows.
fn complete_folder(current: &std::ffi::OsStr) -> Vec<clap_complete::engine::CompletionCandidate> {
    let cur = current.to_string_lossy().to_lowercase();
    candidates(
        Folder::KNOWN
            .iter()
            .map(|f| f.dir_name().to_string())
            .filter(|f| f.to_lowercase().starts_with(&cur)),
    )
}

/// A target from the spool's directory names (no message file is read):
/// contexts, `ctx/box`, `box@ctx`, then folders and message numbers.
fn complete_target(current: &std::ffi::OsStr) -> Vec<clap_complete::engine::CompletionCandidate> {
    let Some(cur) = current.to_str() else {
        return Vec::new();
    };
    // A path (deposit's audio file): the shell completes it.
    if cur.starts_with(['/', '.', '~']) {
        return Vec::new();
    }
    candidates(target_candidates(&typed_spool(), cur))
}

/// Completions of `cur` as a target of `store`.
pub(crate) fn target_candidates(store: &dyn MailboxStore, cur: &str) -> Vec<String> {
    let mut out = Vec::new();
    let contexts = store.contexts().unwrap_or_default();
    // box@ctx[/Folder[/N]]
    if let Some((mbox, rest)) = cur.split_once('@') {
        let (ctx_part, below) = match rest.split_once('/') {
            Some((c, b)) => (c, Some(b)),
            None => (rest, None),
        };
        for ctx in &contexts {
            let Ok(mb) = MailboxId::new(ctx.clone(), mbox) else {
                continue;
            };
            match below {
                None if ctx.as_str().starts_with(ctx_part) && store.mailbox_exists(&mb) => {
                    out.push(format!("{mbox}@{ctx}"));
                }
                Some(below) if ctx.as_str() == ctx_part => {
                    out.extend(below_box(store, &mb, below, &format!("{mbox}@{ctx}/")));
                }
                _ => {}
            }
        }
        return out;
    }
    let parts: Vec<&str> = cur.splitn(3, '/').collect();
    match parts.as_slice() {
        [word] => {
            for ctx in &contexts {
                if ctx.as_str().starts_with(word) {
                    out.push(format!("{ctx}/"));
                }
            }
            // A box by name, in whichever context holds it.
            if !word.is_empty() {
                for ctx in &contexts {
                    for mb in store.mailboxes(ctx).unwrap_or_default() {
                        if mb.mailbox().starts_with(word) {
                            out.push(format!("{}@{ctx}", mb.mailbox()));
                        }
                    }
                }
            }
        }
        [ctx, boxp] => {
            if let Some(ctx) = contexts.iter().find(|c| c.as_str() == *ctx) {
                for mb in store.mailboxes(ctx).unwrap_or_default() {
                    if mb.mailbox().starts_with(boxp) {
                        out.push(format!("{ctx}/{}/", mb.mailbox()));
                    }
                }
            }
        }
        [ctx, mbox, below] => {
            if let Some(mb) = contexts
                .iter()
                .find(|c| c.as_str() == *ctx)
                .and_then(|c| MailboxId::new(c.clone(), mbox).ok())
            {
                out.extend(below_box(store, &mb, below, &format!("{ctx}/{mbox}/")));
            }
        }
        _ => {}
    }
    out
}

/// `Folder[/N]` completions inside one box, each after `prefix`.
fn below_box(store: &dyn MailboxStore, mb: &MailboxId, below: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    match below.split_once('/') {
        None => {
            for f in store.folders(mb).unwrap_or_default() {
                if f.dir_name()
                    .to_lowercase()
                    .starts_with(&below.to_lowercase())
                {
                    out.push(format!("{prefix}{}/", f.dir_name()));
                }
            }
        }
        Some((folder, num)) => {
            let Some(f) = store
                .folders(mb)
                .unwrap_or_default()
                .into_iter()
                .find(|f| f.dir_name().eq_ignore_ascii_case(folder))
            else {
                return out;
            };
            // Numbers from file names only (the directory listing).
            if let Ok(scan) = store.scan_folder(mb, &f) {
                for m in &scan.messages {
                    let n = m.num.get().to_string();
                    if n.starts_with(num) {
                        out.push(format!("{prefix}{}/{n}", f.dir_name()));
                    }
                }
            }
        }
    }
    out
}

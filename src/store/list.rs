//! A listing of one folder, rendered as it is read: the file store parses
//! each `.txt`; the SQL store renders rows straight from the table (JSON
//! without building a `MessageRow`), which keeps a 100k-row listing fast.

use super::sql::SqlStore;
use super::FileStore;
use crate::error::{Error, Result};
use crate::listing::{message_row_from, LsFilter, MetaFields, Zone};
use crate::render::{MessageRowRef, MessageWriter};
use crate::scan::{MsgFiles, MsgState};
use crate::spool::{Folder, MailboxId, MsgNum};

/// Lists one folder of a file store into `w`; `Ok(true)` when `only` (if
/// given) was there. Each `.txt` gives only the fields a row shows
/// ([`Listed`]); JSON rows are written from borrowed text, with one path,
/// date and number buffer for the whole folder.
#[allow(clippy::too_many_arguments)]
pub(super) fn file_folder(
    store: &FileStore,
    mb: &MailboxId,
    folder: &Folder,
    only: Option<MsgNum>,
    filter: &LsFilter,
    zone: Zone,
    w: &mut MessageWriter<&mut Vec<u8>>,
    rows: &mut usize,
    errors: &mut Vec<Error>,
) -> Result<bool> {
    let want = |m: &MsgFiles| only.is_none_or(|n| m.num == n);
    let (context, mailbox) = (mb.context.as_str(), mb.mailbox());
    // `<folder dir>/msgNNNN.txt`, as `location()` shows it.
    let mut path = String::new();
    let mut base = None;
    let (mut date, mut table) = (String::new(), String::new());
    let json = w.is_json();
    let scan = store.folder_listed(mb, folder, &want, &mut |files, dir, meta| {
        let meta = match meta {
            Ok(m) => m,
            // Moved or deleted between readdir and open (Asterisk, another
            // vmtool): no longer here, not an error.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return
            }
            Err(e) => {
                errors.push(e);
                return;
            }
        };
        let base = *base.get_or_insert_with(|| {
            path = dir.display().to_string();
            path.push_str("/msg");
            path.len()
        });
        path.truncate(base);
        let digits = files.num.digits();
        // ASCII by construction.
        let number = std::str::from_utf8(&digits).unwrap_or_default();
        path.push_str(number);
        path.push_str(".txt");
        if !json {
            let row = message_row_from(mb, folder, files, Some(&meta), zone, path.clone());
            if filter.row_ok(&row) {
                // Writing into a Vec cannot fail.
                let _ = w.write(&row);
                *rows += 1;
            }
            return;
        }
        let cid = meta
            .callerid_raw()
            .map(crate::callerid::CallerId::parse_ref);
        let (name, cnum) = match &cid {
            Some(c) => (c.name.as_deref(), c.number.as_deref()),
            None => (None, None),
        };
        let origtime = meta.origtime();
        if !filter.fields_ok(origtime, name, cnum) {
            return;
        }
        let dated = origtime.is_some_and(|t| zone.stamps_into(t, &mut date, &mut table));
        let base64 = meta.callerid_bytes().map(crate::render::base64);
        let row = MessageRowRef {
            context,
            mailbox,
            folder: folder.dir_name(),
            number,
            msg_id: meta.msg_id(),
            callerid: meta.callerid_raw(),
            callerid_name: name,
            callerid_num: cnum,
            origtime,
            date: dated.then_some(date.as_str()),
            duration: meta.duration(),
            urgent: meta.flag_urgent(),
            formats: &files.audio,
            path: &path,
            state: files.state(),
            callerid_base64: base64.as_deref(),
        };
        // Writing into a Vec cannot fail.
        let _ = w.write_json_ref(&row);
        *rows += 1;
    })?;
    Ok(only.is_none_or(|n| scan.messages.iter().any(|m| m.num == n)))
}

/// One folder of a SQL store: rows straight from the table, without the
/// `Metadata` a `.txt` needs (the same fields, as `MetaFields`).
#[allow(clippy::too_many_arguments)]
pub(super) fn sql_folder(
    sql: &SqlStore,
    mb: &MailboxId,
    folder: &Folder,
    only: Option<MsgNum>,
    filter: &LsFilter,
    zone: Zone,
    w: &mut MessageWriter<&mut Vec<u8>>,
    rows: &mut usize,
) -> Result<bool> {
    // One `dir` per folder; each path is it plus the message's stem.
    let dir = sql.table.dir(mb, folder);
    let mut found = false;
    let audio = vec![sql.ext.clone()];
    let (context, mailbox) = (mb.context.as_str(), mb.mailbox());
    let mut path = String::with_capacity(dir.len() + 8);
    let result = sql.folder_rows(mb, folder, &mut |num, r| {
        if only.is_some_and(|n| n != num) {
            return;
        }
        found = true;
        if w.is_json() {
            // No owned `MessageRow`: the fields are borrowed where they are.
            let cid = r.callerid.as_deref().map(crate::callerid::CallerId::parse);
            let (name, cnum) = match &cid {
                Some(c) => (c.name.as_deref(), c.number.as_deref()),
                None => (None, None),
            };
            let origtime = MetaFields::origtime(r);
            if !filter.fields_ok(origtime, name, cnum) {
                return;
            }
            let date = origtime.and_then(|t| zone.stamps(t));
            let number = num.to_string();
            path.clear();
            path.push_str(&dir);
            path.push('/');
            path.push_str("msg");
            path.push_str(&number);
            let formats: &[String] = if r.has_recording { &audio } else { &[] };
            let row = MessageRowRef {
                context,
                mailbox,
                folder: folder.dir_name(),
                number: &number,
                msg_id: MetaFields::msg_id(r),
                callerid: r.callerid.as_deref(),
                callerid_name: name,
                callerid_num: cnum,
                origtime,
                date: date.as_ref().map(|d| d.0.as_str()),
                duration: MetaFields::duration(r),
                urgent: MetaFields::flag_urgent(r),
                formats,
                path: &path,
                state: if r.has_recording {
                    MsgState::Complete
                } else {
                    MsgState::Phantom
                },
                // The table's text comes from the server as UTF-8.
                callerid_base64: None,
            };
            // Writing into a Vec cannot fail.
            let _ = w.write_json_ref(&row);
            *rows += 1;
            return;
        }
        let files = MsgFiles {
            num,
            txt: true,
            audio: if r.has_recording {
                audio.clone()
            } else {
                Vec::new()
            },
        };
        let path = format!("{dir}/{}", num.stem());
        let row = message_row_from(mb, folder, &files, Some(r), zone, path);
        if filter.row_ok(&row) {
            // Writing into a Vec cannot fail.
            let _ = w.write(&row);
            *rows += 1;
        }
    });
    result.map(|()| found)
}

/// As `MsgRow::metadata()` would answer (its keys are all distinct).
impl MetaFields for super::sql::packed::RowView<'_> {
    fn callerid_raw(&self) -> Option<&str> {
        self.callerid.as_deref()
    }
    fn origtime(&self) -> Option<i64> {
        self.origtime.as_ref()?.leading_integer()
    }
    fn duration(&self) -> Option<u64> {
        self.duration
            .as_ref()?
            .leading_integer()
            .and_then(|d| u64::try_from(d).ok())
    }
    fn flag_urgent(&self) -> bool {
        self.flag.as_deref() == Some("Urgent")
    }
    fn msg_id(&self) -> Option<&str> {
        self.msg_id.as_deref().filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Format, Style};
    use crate::store::MailboxStore;

    /// The listing's rows, written from `Listed` and borrowed text, are the
    /// rows `Metadata` + `MessageRow` + serde_json give, on odd files.
    #[test]
    fn fast_rows_equal_the_metadata_rows() {
        let d = tempfile::tempdir().unwrap();
        let spool = crate::spool::Spool::new(d.path().join("voicemail"));
        let mb = MailboxId::new(crate::spool::Context::new("ctx").unwrap(), "100").unwrap();
        let folder = Folder::Inbox;
        let dir = spool.folder_dir(&mb, &folder);
        std::fs::create_dir_all(&dir).unwrap();
        let txts: [&[u8]; 10] = [
            b";\n; Message Information file\n;\n[message]\ncallerid=\"Ren\xe9 \\\"x\\\"\" <01 23>\norigtime=1795689259\nduration=3\nflag=Urgent\nmsg_id=1-2\n",
            b"[message]\r\ncallerid=(555) 123-4567\r\norigtime= 17x\r\nduration=-4\r\nCallerID+=junk\r\ncallerid += more\r\n",
            b"[message]\nmsg_id=a\\;b;c\nflag=Urgent;--x\n--;\ncallerid=\x01\x1b[2J\t\"q\"\\\\ <\x7f>\norigtime=-5\n",
            b"[message]\ncallerid=Unknown\nduration=99999999999999999999\norigtime=253402300799\n",
            b"\xef\xbb\xbf[message]\ncallerid=<>\norigtime=6\nmsg_id=\n",
            b"[message]\ncallerid=\xff\xfe\norigtime=3\nflag=urgent\nduration=1 ; c\n",
            b"[message](!)\norigtime=1\n[message]\ncallerid=\"A\" <1>\norigtime=2\n[message]\norigtime=9\n",
            b"[other]\nx=1\n[message]\nduration => 7\nmsg_id=\"quoted\"\n",
            b"[message]\ncallerid=Bob\x00 <1>\norigtime=1\x002\n",
            b"[message]\n",
        ];
        for (i, txt) in txts.iter().enumerate() {
            std::fs::write(dir.join(format!("msg{i:04}.txt")), txt).unwrap();
            if i % 2 == 0 {
                std::fs::write(dir.join(format!("msg{i:04}.wav")), b"RIFF").unwrap();
                std::fs::write(dir.join(format!("msg{i:04}.WAV")), b"RIFF").unwrap();
            }
        }
        let store = FileStore::new(spool);
        let filter = LsFilter {
            folders: vec![],
            new_only: false,
            since: None,
            until: None,
            caller: None,
        };
        for zone in [Zone::Utc, Zone::Named(chrono_tz::Asia::Kolkata)] {
            let mut fast = Vec::new();
            let mut w = MessageWriter::body_only(&mut fast, Format::Json, Style { color: false });
            let (mut rows, mut errors) = (0, Vec::new());
            file_folder(
                &store,
                &mb,
                &folder,
                None,
                &filter,
                zone,
                &mut w,
                &mut rows,
                &mut errors,
            )
            .unwrap();
            assert!(errors.is_empty(), "{errors:?}");
            let mut slow = String::new();
            store
                .folder_messages(&mb, &folder, &|_| true, &mut |files, meta| {
                    let row = store.message_row(&mb, &folder, files, Some(&meta.unwrap()), zone);
                    slow.push_str(&serde_json::to_string(&row).unwrap());
                    slow.push('\n');
                })
                .unwrap();
            assert_eq!(rows, txts.len());
            assert_eq!(String::from_utf8(fast).unwrap(), slow);
        }
    }
}

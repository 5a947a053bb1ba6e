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
        crate::metadata::leading_integer(self.origtime.as_deref()?)
    }
    fn duration(&self) -> Option<u64> {
        crate::metadata::leading_integer(self.duration.as_deref()?)
            .and_then(|d| u64::try_from(d).ok())
    }
    fn flag_urgent(&self) -> bool {
        self.flag.as_deref() == Some("Urgent")
    }
    fn msg_id(&self) -> Option<&str> {
        self.msg_id.as_deref().filter(|s| !s.is_empty())
    }
}

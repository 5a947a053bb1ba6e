//! What a listing shows of a message, whatever the store: the display zone,
//! the fields a row reads (`MetaFields`: a parsed `.txt` or a SQL row), the
//! row itself and the filters of `ls` (folders, dates, caller).

use crate::metadata::Metadata;
use crate::render::MessageRow;
use crate::scan::MsgFiles;
use crate::spool::{Folder, MailboxId};
use chrono::{DateTime, Local, Utc};

/// Display zone for dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Utc,
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// The server's zone by name when it can be found ($TZ, else the system's),
    /// so dates carry abbreviations like CET; else chrono's local offset.
    pub fn local() -> Zone {
        let tz_env = std::env::var("TZ").ok();
        let name = tz_env
            .as_deref()
            .map(|t| t.trim_start_matches(':').to_string())
            .or_else(|| iana_time_zone::get_timezone().ok());
        match name.and_then(|n| n.parse::<chrono_tz::Tz>().ok()) {
            Some(tz) => Zone::Named(tz),
            None => Zone::Local,
        }
    }

    /// The two renderings listings need, from one zone conversion and without
    /// re-parsing a format string per message: RFC 3339 and `YYYY-MM-DD HH:MM`.
    pub fn stamps(&self, ts: i64) -> Option<(String, String)> {
        let (mut rfc, mut table) = (String::with_capacity(25), String::with_capacity(16));
        self.stamps_into(ts, &mut rfc, &mut table)
            .then_some((rfc, table))
    }

    /// [`Zone::stamps`] into the given strings (cleared first); false when
    /// `ts` is out of range (both left empty).
    pub fn stamps_into(&self, ts: i64, rfc: &mut String, table: &mut String) -> bool {
        use chrono::{Datelike, Offset, Timelike};
        rfc.clear();
        table.clear();
        let Some(utc) = DateTime::<Utc>::from_timestamp(ts, 0) else {
            return false;
        };
        let (naive, offset) = match self {
            Zone::Utc => (utc.naive_utc(), 0),
            Zone::Local => {
                let d = utc.with_timezone(&Local);
                (d.naive_local(), d.offset().fix().local_minus_utc())
            }
            Zone::Named(tz) => {
                let d = utc.with_timezone(tz);
                (d.naive_local(), d.offset().fix().local_minus_utc())
            }
        };
        let (sign, off) = if offset < 0 {
            ('-', -offset)
        } else {
            ('+', offset)
        };
        let year = naive.year();
        if !(0..=9999).contains(&year) {
            use std::fmt::Write;
            let day = format!("{year:04}-{:02}-{:02}", naive.month(), naive.day());
            let _ = write!(
                rfc,
                "{day}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                naive.hour(),
                naive.minute(),
                naive.second(),
                off / 3600,
                off / 60 % 60
            );
            let _ = write!(table, "{day} {:02}:{:02}", naive.hour(), naive.minute());
            return true;
        }
        // By hand: `format!` was a tenth of a large listing's time.
        fn digits(out: &mut String, n: u32, width: u32) {
            for i in (0..width).rev() {
                out.push(char::from(b'0' + (n / 10u32.pow(i) % 10) as u8));
            }
        }
        digits(table, year as u32, 4);
        table.push('-');
        digits(table, naive.month(), 2);
        table.push('-');
        digits(table, naive.day(), 2);
        rfc.push_str(table);
        rfc.push('T');
        table.push(' ');
        for (i, n) in [naive.hour(), naive.minute(), naive.second()]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                rfc.push(':');
            }
            digits(rfc, n, 2);
        }
        digits(table, naive.hour(), 2);
        table.push(':');
        digits(table, naive.minute(), 2);
        rfc.push(sign);
        // Hours of an offset never reach 100 (chrono caps offsets below a day).
        digits(rfc, (off / 3600) as u32, 2);
        rfc.push(':');
        digits(rfc, (off / 60 % 60) as u32, 2);
        true
    }

    pub fn format(&self, ts: i64, fmt: &str) -> Option<String> {
        let utc = DateTime::<Utc>::from_timestamp(ts, 0)?;
        Some(match self {
            Zone::Utc => utc.format(fmt).to_string(),
            Zone::Local => utc.with_timezone(&Local).format(fmt).to_string(),
            Zone::Named(tz) => utc.with_timezone(tz).format(fmt).to_string(),
        })
    }
}

/// What a listing row reads of a message's metadata: the parsed `.txt`, or
/// a SQL row directly (the same values without building a `Metadata`).
pub trait MetaFields {
    fn callerid_raw(&self) -> Option<&str>;
    fn origtime(&self) -> Option<i64>;
    fn duration(&self) -> Option<u64>;
    fn flag_urgent(&self) -> bool;
    fn msg_id(&self) -> Option<&str>;
    /// The callerid= bytes when they are not UTF-8.
    fn callerid_bytes(&self) -> Option<&[u8]> {
        None
    }
}

impl MetaFields for Metadata {
    fn callerid_raw(&self) -> Option<&str> {
        Metadata::callerid_raw(self)
    }
    fn origtime(&self) -> Option<i64> {
        Metadata::origtime(self)
    }
    fn duration(&self) -> Option<u64> {
        Metadata::duration(self)
    }
    fn flag_urgent(&self) -> bool {
        Metadata::flag_urgent(self)
    }
    fn msg_id(&self) -> Option<&str> {
        Metadata::msg_id(self)
    }
    fn callerid_bytes(&self) -> Option<&[u8]> {
        self.get_bytes("callerid")
    }
}

impl MetaFields for crate::metadata::Listed<'_> {
    fn callerid_raw(&self) -> Option<&str> {
        crate::metadata::Listed::callerid_raw(self)
    }
    fn origtime(&self) -> Option<i64> {
        crate::metadata::Listed::origtime(self)
    }
    fn duration(&self) -> Option<u64> {
        crate::metadata::Listed::duration(self)
    }
    fn flag_urgent(&self) -> bool {
        crate::metadata::Listed::flag_urgent(self)
    }
    fn msg_id(&self) -> Option<&str> {
        crate::metadata::Listed::msg_id(self)
    }
    fn callerid_bytes(&self) -> Option<&[u8]> {
        crate::metadata::Listed::callerid_bytes(self)
    }
}

/// The listing row of one message, with the metadata from anywhere and the
/// path given (`MailboxStore::message_row` gives the store's own).
pub fn message_row_from(
    mb: &MailboxId,
    folder: &Folder,
    files: &MsgFiles,
    meta: Option<&dyn MetaFields>,
    zone: Zone,
    path: String,
) -> MessageRow {
    let cid = meta
        .and_then(|m| m.callerid_raw())
        .map(crate::callerid::CallerId::parse);
    let origtime = meta.and_then(|m| m.origtime());
    let (date, short_date) = match origtime.and_then(|t| zone.stamps(t)) {
        Some((d, s)) => (Some(d), s),
        None => (None, "?".into()),
    };
    let (callerid_name, callerid_num) = match cid {
        Some(c) => (c.name, c.number),
        None => (None, None),
    };
    MessageRow {
        context: mb.context.to_string(),
        mailbox: mb.mailbox().to_string(),
        folder: folder.to_string(),
        number: files.num.to_string(),
        msg_id: meta.and_then(|m| m.msg_id()).map(str::to_string),
        callerid: meta.and_then(|m| m.callerid_raw()).map(str::to_string),
        callerid_name,
        callerid_num,
        origtime,
        date,
        duration: meta.and_then(|m| m.duration()),
        urgent: meta.is_some_and(|m| m.flag_urgent()),
        formats: files.audio.clone(),
        path,
        state: files.state(),
        callerid_base64: meta
            .and_then(|m| m.callerid_bytes())
            .map(crate::render::base64),
        short_date,
    }
}

pub struct LsFilter {
    pub folders: Vec<Folder>,
    pub new_only: bool,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub caller: Option<String>,
}

impl LsFilter {
    pub fn folder_ok(&self, f: &Folder) -> bool {
        (self.folders.is_empty() || self.folders.contains(f)) && (!self.new_only || f.is_new())
    }

    pub fn row_ok(&self, row: &MessageRow) -> bool {
        self.fields_ok(
            row.origtime,
            row.callerid_name.as_deref(),
            row.callerid_num.as_deref(),
        )
    }

    /// `row_ok` on the fields it reads.
    pub fn fields_ok(&self, origtime: Option<i64>, name: Option<&str>, num: Option<&str>) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = origtime else { return false };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        if let Some(c) = &self.caller {
            let hit = |s: Option<&str>| s.is_some_and(|v| v.to_lowercase().contains(c));
            if !hit(name) && !hit(num) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_stamps_match_chrono_formatting() {
        let zones = [
            Zone::Utc,
            Zone::Named(chrono_tz::Europe::Paris),
            Zone::Named(chrono_tz::Asia::Kolkata),
            Zone::Named(chrono_tz::America::St_Johns),
            Zone::Named(chrono_tz::Australia::Lord_Howe),
        ];
        for zone in zones {
            for ts in [0, -5, 1_790_000_000, 1_711_846_800, 253_402_200_000] {
                let (rfc, table) = zone.stamps(ts).unwrap();
                assert_eq!(rfc, zone.format(ts, "%Y-%m-%dT%H:%M:%S%:z").unwrap());
                assert_eq!(table, zone.format(ts, "%Y-%m-%d %H:%M").unwrap());
            }
        }
        // Past year 9999 as before (chrono's %Y would add a sign).
        let far = Zone::Named(chrono_tz::Europe::Paris).stamps(253_402_300_799);
        assert_eq!(far.unwrap().0, "10000-01-01T00:59:59+01:00");
    }
}

//! The voicemail table as Asterisk's schema scripts create it (spec §10.1):
//! which columns it has, how a row maps to a message, and the `dir` paths.

use super::db::{Cell, Db, DbError, DbResult, Kind, V};
use crate::error::{Error, Result};
use crate::metadata::{self, Metadata};
use crate::spool::{Context, Folder, MailboxId, MsgNum};

/// Columns every Asterisk version reads and writes.
pub const REQUIRED: [&str; 11] = [
    "dir",
    "msgnum",
    "context",
    "callerid",
    "origtime",
    "duration",
    "recording",
    "flag",
    "mailboxuser",
    "mailboxcontext",
    "msg_id",
];

/// `.txt` keys Asterisk's table has no column for; a site that adds such a
/// column gets them kept (Asterisk's retrieve copies every extra column into
/// the `.txt`, so they come back exactly as the file backend wrote them).
pub const FILE_ONLY: [&str; 6] = [
    "origmailbox",
    "exten",
    "rdnis",
    "priority",
    "callerchan",
    "origdate",
];

/// The table and what it holds.
#[derive(Debug, Clone)]
pub struct Table {
    /// As written in statements (unquoted, as Asterisk writes it).
    pub name: String,
    pub has_category: bool,
    /// `origtime`/`duration` are integers (varchar in old schemas).
    pub int_times: bool,
    /// Which of `FILE_ONLY` the table has.
    pub extra: Vec<&'static str>,
    /// `<astspooldir>/voicemail`, no trailing slash: the start of every `dir`.
    pub prefix: String,
    pub kind: Kind,
}

/// A message row without its recording.
#[derive(Debug, Clone, PartialEq)]
pub struct MsgRow {
    pub dir: String,
    pub msgnum: i32,
    pub context: Option<String>,
    pub callerid: Option<String>,
    pub origtime: Option<String>,
    pub duration: Option<String>,
    pub flag: Option<String>,
    pub category: Option<String>,
    pub mailboxuser: Option<String>,
    pub mailboxcontext: Option<String>,
    pub msg_id: Option<String>,
    /// Values of the table's `FILE_ONLY` columns, in `Table::extra` order.
    pub extra: Vec<Option<String>>,
    pub has_recording: bool,
}

/// Where a `dir` points, when it is a message folder under the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub mailbox: MailboxId,
    pub folder: Folder,
}

pub fn db_err(table: &Table, what: &str) -> impl Fn(DbError) -> Error {
    let what = what.to_string();
    let name = table.name.clone();
    move |e| Error::Failed(format!("{what} in table {name}: {e}"))
}

impl Table {
    /// Checks the table exists and has Asterisk's columns.
    pub fn open(db: &mut Db, name: &str, prefix: &str) -> Result<Table> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(Error::Usage(format!(
                "table name {name:?}: only letters, digits, '_' and '.' are allowed"
            )));
        }
        let (schema_sql, table_name) = match name.split_once('.') {
            Some((s, t)) => ("?".to_string(), (Some(s.to_string()), t.to_string())),
            None => (
                match db.kind() {
                    Kind::Postgres => "current_schema()".to_string(),
                    Kind::Mysql => "DATABASE()".to_string(),
                },
                (None, name.to_string()),
            ),
        };
        // PostgreSQL folds unquoted names to lower case, as Asterisk writes them.
        let lookup = match db.kind() {
            Kind::Postgres => table_name.1.to_ascii_lowercase(),
            Kind::Mysql => table_name.1.clone(),
        };
        let mut params = Vec::new();
        if let Some(s) = &table_name.0 {
            params.push(V::Text(s.clone()));
        }
        params.push(V::Text(lookup));
        let sql = format!(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = {schema_sql} AND table_name = ?"
        );
        let rows = db.query(&sql, &params).map_err(|e| {
            Error::Failed(format!(
                "cannot read the columns of table {name} on {}: {e}",
                db.target.describe()
            ))
        })?;
        let cols: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.first()?.text()?.to_ascii_lowercase(),
                    r.get(1)?.text()?.to_ascii_lowercase(),
                ))
            })
            .collect();
        if cols.is_empty() {
            return Err(Error::NotFound(format!(
                "table {name} does not exist on {}: create it with Asterisk's schema scripts (contrib/ast-db-manage/voicemail), or name the table with odbctable= in voicemail.conf or --db-table",
                db.target.describe()
            )));
        }
        let has = |c: &str| cols.iter().any(|(n, _)| n == c);
        let missing: Vec<&str> = REQUIRED.iter().copied().filter(|c| !has(c)).collect();
        if !missing.is_empty() {
            return Err(Error::Failed(format!(
                "table {name} on {} lacks the column(s) {}: it is not Asterisk's voicemail table (see contrib/ast-db-manage/voicemail)",
                db.target.describe(),
                missing.join(", ")
            )));
        }
        let int_times = cols
            .iter()
            .find(|(n, _)| n == "origtime")
            .is_some_and(|(_, t)| t.contains("int"));
        Ok(Table {
            name: name.to_string(),
            has_category: has("category"),
            int_times,
            extra: FILE_ONLY.iter().copied().filter(|c| has(c)).collect(),
            prefix: prefix.trim_end_matches('/').to_string(),
            kind: db.kind(),
        })
    }

    pub fn dir(&self, mb: &MailboxId, folder: &Folder) -> String {
        format!(
            "{}/{}/{}/{}",
            self.prefix,
            mb.context.as_str(),
            mb.mailbox(),
            folder.dir_name()
        )
    }

    pub fn box_prefix(&self, mb: &MailboxId) -> String {
        format!("{}/{}/{}/", self.prefix, mb.context.as_str(), mb.mailbox())
    }

    pub fn context_prefix(&self, ctx: &Context) -> String {
        format!("{}/{}/", self.prefix, ctx.as_str())
    }

    /// `dir LIKE 'prefix%'` with LIKE's wildcards escaped.
    pub fn like(prefix: &str) -> String {
        let mut s = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '%' | '_' | '\\') {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('%');
        s
    }

    /// The mailbox and folder of a `dir`, if it is `<prefix>/<ctx>/<box>/<Folder>`.
    pub fn place(&self, dir: &str) -> Option<Place> {
        let rest = dir.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let mut it = rest.split('/');
        let (c, b, f) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        // Greetings are rows too (`<box>/unavail`, msgnum -1), not folders.
        if crate::store::greeting::Kind::ALL
            .iter()
            .any(|k| k.base() == f)
        {
            return None;
        }
        let ctx = Context::new(c).ok()?;
        let mailbox = MailboxId::new(ctx, b).ok()?;
        // Literal, as Asterisk's COUNT matches `dir`: `inbox` is not INBOX.
        let folder = Folder::from_dir_name(f).ok()?;
        Some(Place { mailbox, folder })
    }

    /// A column read as text, whatever its type.
    pub fn text_cast(&self, col: &str) -> String {
        match self.kind {
            Kind::Postgres => format!("CAST({col} AS TEXT)"),
            Kind::Mysql => format!("CAST({col} AS CHAR)"),
        }
    }

    /// An integer parameter for `origtime`/`duration`, whatever their type.
    pub fn time_param(&self) -> &'static str {
        match (self.kind, self.int_times) {
            (Kind::Postgres, true) => "CAST(CAST(? AS TEXT) AS INTEGER)",
            _ => "?",
        }
    }

    /// The select list of `MsgRow` (never `recording` itself).
    pub fn row_columns(&self) -> String {
        let mut s = format!(
            "dir, msgnum, context, callerid, {}, {}, flag, {}, mailboxuser, mailboxcontext, msg_id, CASE WHEN recording IS NULL THEN 0 ELSE 1 END",
            self.text_cast("origtime"),
            self.text_cast("duration"),
            if self.has_category { "category" } else { "NULL" },
        );
        for c in &self.extra {
            s.push_str(", ");
            s.push_str(&self.text_cast(c));
        }
        s
    }

    /// The select list of a whole-table listing: what a listing shows
    /// (`packed::RowView`), half of `row_columns()`; integer times as
    /// integers, which read as the same text as their cast.
    pub fn listing_columns(&self) -> String {
        let time = |c: &str| {
            if self.int_times {
                c.to_string()
            } else {
                self.text_cast(c)
            }
        };
        format!(
            "dir, msgnum, callerid, {}, {}, flag, msg_id, CASE WHEN recording IS NULL THEN 0 ELSE 1 END",
            time("origtime"),
            time("duration")
        )
    }

    pub fn parse_row(&self, cells: Vec<Cell>) -> Option<MsgRow> {
        let mut it = cells.into_iter();
        let mut next = || it.next().unwrap_or(Cell::Null);
        let dir = next().text()?;
        let msgnum = i32::try_from(next().int()?).ok()?;
        let mut t = || next().text();
        let (context, callerid, origtime, duration, flag, category, mailboxuser, mailboxcontext) =
            (t(), t(), t(), t(), t(), t(), t(), t());
        let msg_id = t();
        let has_recording = t().as_deref() == Some("1");
        let extra = self.extra.iter().map(|_| t()).collect();
        Some(MsgRow {
            dir,
            msgnum,
            context,
            callerid,
            origtime,
            duration,
            flag,
            category,
            mailboxuser,
            mailboxcontext,
            msg_id,
            extra,
            has_recording,
        })
    }

    /// Rows of messages (not greetings, msgnum -1) whose `dir` starts with `prefix`.
    pub fn rows_under(
        &self,
        db: &mut Db,
        prefix: &str,
        each: &mut dyn FnMut(MsgRow),
    ) -> Result<()> {
        let sql = format!(
            "SELECT {} FROM {} WHERE dir LIKE ? AND msgnum >= 0",
            self.row_columns(),
            self.name
        );
        db.query_each(&sql, &[V::Text(Table::like(prefix))], &mut |cells| {
            if let Some(r) = self.parse_row(cells) {
                if r.dir.starts_with(prefix) {
                    each(r);
                }
            }
        })
        .map_err(db_err(self, "cannot list messages"))
    }

    /// One row by place.
    pub fn row(&self, db: &mut Db, dir: &str, num: i32) -> Result<Option<MsgRow>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE dir = ? AND msgnum = ?",
            self.row_columns(),
            self.name
        );
        let rows = db
            .query(&sql, &[V::Text(dir.into()), V::Int(num)])
            .map_err(db_err(self, "cannot read a message"))?;
        Ok(rows.into_iter().next().and_then(|c| self.parse_row(c)))
    }

    /// The recording blob, or `None` when the column is NULL.
    pub fn recording(&self, db: &mut Db, dir: &str, num: i32) -> Result<Option<Vec<u8>>> {
        let sql = format!(
            "SELECT recording FROM {} WHERE dir = ? AND msgnum = ?",
            self.name
        );
        let rows = db
            .query(&sql, &[V::Text(dir.into()), V::Int(num)])
            .map_err(db_err(self, "cannot read a recording"))?;
        match rows.into_iter().next() {
            None => Err(Error::NotFound(format!(
                "no row dir={dir} msgnum={num} in table {} (moved or deleted meanwhile?)",
                self.name
            ))),
            Some(cells) => Ok(cells.into_iter().next().and_then(Cell::into_bytes)),
        }
    }
}

impl MsgRow {
    /// The metadata Asterisk's retrieve writes for this row: every column but
    /// `dir`, `msgnum` and `recording`, NULLs left out (spec §10.1.1).
    pub fn metadata(&self, table: &Table) -> Metadata {
        let mut fields: Vec<(&str, String)> = Vec::new();
        let mut add = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                fields.push((k, v.clone()));
            }
        };
        add("context", &self.context);
        add("callerid", &self.callerid);
        add("origtime", &self.origtime);
        add("duration", &self.duration);
        add("flag", &self.flag);
        add("category", &self.category);
        add("mailboxuser", &self.mailboxuser);
        add("mailboxcontext", &self.mailboxcontext);
        add("msg_id", &self.msg_id);
        for (k, v) in table.extra.iter().zip(&self.extra) {
            add(k, v);
        }
        Metadata::from_fields(fields)
    }

    /// The `.txt` the file backend would hold for this message, in its key
    /// order (spec §3.2): `origdate` from `origtime` when the table has no
    /// such column; keys the table cannot hold are written empty.
    pub fn file_metadata(&self, table: &Table) -> Metadata {
        let extra = |k: &str| -> Option<String> {
            let i = table.extra.iter().position(|e| *e == k)?;
            self.extra.get(i).cloned().flatten()
        };
        let val = |k: &str| -> String {
            match k {
                "context" => self.context.clone(),
                "callerid" => self.callerid.clone(),
                "origtime" => self.origtime.clone(),
                "category" => self.category.clone(),
                "msg_id" => self.msg_id.clone(),
                "flag" => self.flag.clone(),
                "duration" => self.duration.clone(),
                "origdate" => extra(k).or_else(|| {
                    self.origtime
                        .as_deref()
                        .and_then(|t| t.trim().parse().ok())
                        .and_then(metadata::origdate_for)
                }),
                other => extra(other),
            }
            .unwrap_or_default()
        };
        Metadata::from_fields(metadata::ASTERISK_KEY_ORDER.iter().map(|k| (*k, val(k))))
    }

    /// The bytes of that `.txt`: like Asterisk's writer, except that `;` in
    /// the table's own columns is escaped (vmtool's writer rule, spec §3.1);
    /// the file-only columns hold the raw text of the original line, so
    /// they are written back as they were.
    pub fn file_txt(&self, table: &Table) -> Vec<u8> {
        let meta = self.file_metadata(table);
        let mut out = String::from(";\n; Message Information file\n;\n[message]\n");
        for f in meta.fields() {
            out.push_str(&f.key);
            out.push('=');
            let raw = table.extra.contains(&f.key.as_str());
            for c in f.value.chars() {
                match c {
                    '\r' | '\n' => {}
                    ';' if !raw => out.push_str("\\;"),
                    _ => out.push(c),
                }
            }
            out.push('\n');
        }
        out.into_bytes()
    }

    pub fn msg_num(&self) -> Option<MsgNum> {
        u16::try_from(self.msgnum).ok().and_then(MsgNum::new)
    }
}

/// Inserts a message row with Asterisk's own statement (spec §10.1.1),
/// plus `category` and the file-only keys when the table has them.
pub fn insert(
    db: &mut Db,
    t: &Table,
    mb: &MailboxId,
    dir: &str,
    num: i32,
    meta: &Metadata,
    audio: &[u8],
) -> DbResult<u64> {
    let get = |k: &str| meta.get(k).map(str::to_string);
    let num_text = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut cols = vec![
        "dir",
        "msgnum",
        "recording",
        "context",
        "callerid",
        "origtime",
        "duration",
        "mailboxuser",
        "mailboxcontext",
        "flag",
        "msg_id",
    ];
    let tp = t.time_param();
    let mut marks = vec!["?", "?", "?", "?", "?", tp, tp, "?", "?", "?", "?"];
    let mut p = vec![
        V::Text(dir.to_string()),
        V::Int(num),
        V::Bytes(audio.to_vec()),
        V::from(get("context")),
        V::from(get("callerid")),
        V::from(num_text("origtime")),
        V::from(num_text("duration")),
        V::Text(mb.mailbox().to_string()),
        V::Text(mb.context.to_string()),
        V::Text(get("flag").unwrap_or_default()),
        V::from(get("msg_id")),
    ];
    // Asterisk inserts category only when it is not empty.
    if t.has_category {
        if let Some(c) = get("category").filter(|c| !c.is_empty()) {
            cols.push("category");
            marks.push("?");
            p.push(V::Text(c));
        }
    }
    for k in &t.extra {
        if let Some(v) = get(k) {
            cols.push(k);
            marks.push("?");
            p.push(V::Text(v));
        }
    }
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        t.name,
        cols.join(", "),
        marks.join(", ")
    );
    db.exec(&sql, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            name: "voicemail_messages".into(),
            has_category: true,
            int_times: true,
            extra: vec![],
            prefix: "/var/spool/asterisk/voicemail".into(),
            kind: Kind::Postgres,
        }
    }

    #[test]
    fn dirs_map_to_places_and_back() {
        let t = table();
        let p = t
            .place("/var/spool/asterisk/voicemail/compta/1202/INBOX")
            .unwrap();
        assert_eq!(p.mailbox.to_string(), "1202@compta");
        assert_eq!(p.folder, Folder::Inbox);
        assert_eq!(
            t.dir(&p.mailbox, &p.folder),
            "/var/spool/asterisk/voicemail/compta/1202/INBOX"
        );
        assert!(t
            .place("/var/spool/asterisk/voicemail/compta/1202")
            .is_none());
        assert!(t.place("/other/compta/1202/INBOX").is_none());
        assert!(t
            .place("/var/spool/asterisk/voicemail/compta/1202/INBOX/x")
            .is_none());
        assert!(t
            .place("/var/spool/asterisk/voicemail/../1202/INBOX")
            .is_none());
        // Folder names are literal: Asterisk's COUNT matches dir byte for byte.
        assert_eq!(
            t.place("/var/spool/asterisk/voicemail/c/1/inbox")
                .unwrap()
                .folder
                .dir_name(),
            "inbox"
        );
        assert_eq!(Table::like("/a_b/100%"), "/a\\_b/100\\%%");
    }
}

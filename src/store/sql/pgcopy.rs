//! PostgreSQL's whole-table read as `COPY (SELECT …) TO STDOUT (FORMAT
//! binary)`: the rows come as one byte stream parsed here, with no row
//! object per row and, on a large table, no trip through the driver's
//! runtime per row (each half of the heap is read inside one `block_on`
//! on a connection of its own).

use super::db::{pg_config, pg_message, Db, DbError, RawCell, V};
use super::spill::{Scanned, Scanner};
use super::table::{db_err, Table};
use crate::error::{Error, Result};
use std::sync::mpsc;

/// How a column's binary value becomes a cell: as `db::pg_cell` reads the
/// same type from a query's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ColKind {
    Int2,
    Int4,
    Int8,
    Bool,
    Bytea,
    /// Text in the connection's encoding (UTF-8); other bytes read as NULL,
    /// as the driver's `&str` does.
    Text,
}

impl ColKind {
    /// The kind of a column type `pg_cell` reads; `None` for any other.
    pub(super) fn of(ty: &postgres::types::Type) -> Option<ColKind> {
        use postgres::types::Type;
        Some(match *ty {
            Type::INT2 => ColKind::Int2,
            Type::INT4 => ColKind::Int4,
            Type::INT8 => ColKind::Int8,
            Type::BOOL => ColKind::Bool,
            Type::BYTEA => ColKind::Bytea,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => ColKind::Text,
            _ => return None,
        })
    }
}

/// The most columns a row may have (the cells sit in an array).
const MAX_COLS: usize = 16;

/// `PGCOPY\n\377\r\n\0`, then the flags and the header extension's length.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Parses COPY's binary format, in pieces as they arrive.
pub(super) struct CopyParser {
    kinds: Vec<ColKind>,
    /// The end of the last piece when it split a row.
    rest: Vec<u8>,
    header: bool,
    done: bool,
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl CopyParser {
    pub(super) fn new(kinds: Vec<ColKind>) -> Option<CopyParser> {
        (kinds.len() <= MAX_COLS).then_some(CopyParser {
            kinds,
            rest: Vec::new(),
            header: false,
            done: false,
        })
    }

    /// Whether the trailer has been read (the whole result was there).
    pub(super) fn complete(&self) -> bool {
        self.done && self.rest.is_empty()
    }

    /// Feeds the next piece of the stream; `each` sees every whole row and
    /// returns false to stop (then so does this).
    pub(super) fn feed(
        &mut self,
        piece: &[u8],
        each: &mut dyn FnMut(&[RawCell<'_>]) -> bool,
    ) -> std::result::Result<bool, String> {
        if self.rest.is_empty() {
            let (used, go) = self.parse(piece, each)?;
            self.rest.extend_from_slice(&piece[used..]);
            return Ok(go);
        }
        let mut buf = std::mem::take(&mut self.rest);
        buf.extend_from_slice(piece);
        let (used, go) = self.parse(&buf, each)?;
        buf.drain(..used);
        self.rest = buf;
        Ok(go)
    }

    /// Parses the whole rows at the start of `buf`: the bytes used.
    fn parse(
        &mut self,
        buf: &[u8],
        each: &mut dyn FnMut(&[RawCell<'_>]) -> bool,
    ) -> std::result::Result<(usize, bool), String> {
        let mut at = 0;
        if !self.header {
            if buf.len() < 19 {
                return Ok((0, true));
            }
            if &buf[..11] != SIGNATURE {
                return Err("COPY sent no binary header".into());
            }
            let ext = usize::try_from(be_i32(&buf[15..19])).map_err(|_| "bad COPY header")?;
            if buf.len() < 19 + ext {
                return Ok((0, true));
            }
            at = 19 + ext;
            self.header = true;
        }
        let mut cells = [RawCell::Null; MAX_COLS];
        let width = self.kinds.len();
        'rows: while !self.done {
            let Some(n) = buf.get(at..at + 2).map(be_i16) else {
                break;
            };
            if n == -1 {
                self.done = true;
                at += 2;
                break;
            }
            if usize::try_from(n).ok() != Some(width) {
                return Err(format!("COPY sent a row of {n} columns, not {width}"));
            }
            let mut p = at + 2;
            for (cell, kind) in cells.iter_mut().zip(&self.kinds) {
                let Some(len) = buf.get(p..p + 4).map(be_i32) else {
                    break 'rows;
                };
                p += 4;
                if len < 0 {
                    *cell = RawCell::Null;
                    continue;
                }
                let Some(v) = buf.get(p..p + len as usize) else {
                    break 'rows;
                };
                p += len as usize;
                let bad = || format!("COPY sent {len} bytes for a {kind:?} column");
                *cell = match (kind, v.len()) {
                    (ColKind::Int2, 2) => RawCell::Int(i64::from(be_i16(v))),
                    (ColKind::Int4, 4) => RawCell::Int(i64::from(be_i32(v))),
                    (ColKind::Int8, 8) => {
                        RawCell::Int(i64::from_be_bytes(v.try_into().map_err(|_| bad())?))
                    }
                    (ColKind::Bool, 1) => RawCell::Int(i64::from(v[0] != 0)),
                    (ColKind::Bytea, _) => RawCell::Bytes(v),
                    (ColKind::Text, _) if std::str::from_utf8(v).is_ok() => RawCell::Bytes(v),
                    (ColKind::Text, _) => RawCell::Null,
                    _ => return Err(bad()),
                };
            }
            at = p;
            if !each(&cells[..width]) {
                return Ok((at, false));
            }
        }
        Ok((at, true))
    }
}

/// One read of `sql` (no parameters) by COPY into scanners: one, or two on
/// a large table. `None` when a column has a type COPY is not read for
/// here (the caller then uses the query path).
pub(super) fn read(
    db: &mut Db,
    table: &Table,
    sql: &str,
    prefix: &str,
) -> Option<Vec<Result<Scanned>>> {
    let kinds: Vec<ColKind> = db
        .pg_column_types(sql)
        .ok()??
        .iter()
        .map(ColKind::of)
        .collect::<Option<_>>()?;
    CopyParser::new(kinds.clone())?;
    let copy = |sql: &str| format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
    if let Some(mid) = halves_at(db, table) {
        let a = copy(&format!("{sql} AND ctid < '({mid},0)'"));
        let b = copy(&format!("{sql} AND ctid >= '({mid},0)'"));
        if let Some(r) = read_halves(&db.target, table, &kinds, prefix, [&a, &b]) {
            return Some(r);
        }
    }
    let mut sc = match Scanner::new(false, prefix) {
        Ok(s) => s,
        Err(e) => return Some(vec![Err(e)]),
    };
    let mut parser = CopyParser::new(kinds)?;
    let mut bad = None;
    let r = db.copy_out_each(
        &copy(sql),
        &mut |piece| match parser.feed(piece, &mut |c| sc.row(c)) {
            Ok(go) => go,
            Err(e) => {
                bad = Some(e);
                false
            }
        },
    );
    Some(vec![finish(table, r, bad, &parser, sc)])
}

/// The scanner's result, or what stopped the read.
fn finish(
    table: &Table,
    read: std::result::Result<(), DbError>,
    bad: Option<String>,
    parser: &CopyParser,
    sc: Scanner<'_>,
) -> Result<Scanned> {
    read.map_err(db_err(table, "cannot list messages"))?;
    if let Some(msg) = bad {
        return Err(db_err(table, "cannot list messages")(DbError {
            msg,
            retry: false,
        }));
    }
    let done = parser.complete();
    let out = sc.finish()?;
    if !done {
        return Err(Error::Failed(format!(
            "cannot list messages in table {}: COPY ended before its last row",
            table.name
        )));
    }
    Ok(out)
}

/// PostgreSQL 14 and later scan a range of the heap by `ctid`: on a large
/// table, two halves on two connections use both cores (the server's and
/// ours). The page to split at, if so.
fn halves_at(db: &mut Db, table: &Table) -> Option<i64> {
    let q = "SELECT current_setting('server_version_num')::int >= 140000, (SELECT relpages FROM pg_class WHERE oid = CAST(CAST(? AS TEXT) AS regclass))";
    let rows = db.query(q, &[V::Text(table.name.clone())]).ok()?;
    let pages = match rows.first().map(|r| (r[0].int(), r[1].int())) {
        Some((Some(1), Some(p))) => p,
        _ => return None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (pages >= 1000 && cores >= 2).then_some(pages / 2)
}

/// How a half joins the other's snapshot: the first exports it, the second
/// imports it (else a row updated meanwhile, a message moved to Old, could
/// be seen in each half).
enum Role {
    Export {
        snap: mpsc::Sender<Option<String>>,
        imported: mpsc::Receiver<bool>,
    },
    Import {
        snap: mpsc::Receiver<Option<String>>,
        imported: mpsc::Sender<bool>,
    },
}

/// Both halves, each on its own thread and connection; `None` when they
/// could not be set up (the caller reads on its own connection).
fn read_halves(
    target: &super::db::DbTarget,
    table: &Table,
    kinds: &[ColKind],
    prefix: &str,
    sql: [&String; 2],
) -> Option<Vec<Result<Scanned>>> {
    let (snap_tx, snap_rx) = mpsc::channel();
    let (imp_tx, imp_rx) = mpsc::channel();
    let roles = [
        Role::Export {
            snap: snap_tx,
            imported: imp_rx,
        },
        Role::Import {
            snap: snap_rx,
            imported: imp_tx,
        },
    ];
    let results: Vec<Option<Result<_>>> = std::thread::scope(|s| {
        let running: Vec<_> = roles
            .into_iter()
            .zip(sql)
            .map(|(role, sql)| s.spawn(move || half(target, table, kinds, prefix, role, sql)))
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Some(Err(Error::Failed("listing thread failed".into()))))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// One half: `None` when its connection or snapshot could not be set up.
fn half(
    target: &super::db::DbTarget,
    table: &Table,
    kinds: &[ColKind],
    prefix: &str,
    role: Role,
    sql: &str,
) -> Option<Result<Scanned>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async move {
        let setup = async {
            let (client, conn) = pg_config(target).connect(tokio_postgres::NoTls).await?;
            // Its errors show on the client's calls.
            tokio::spawn(conn);
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            Ok::<_, tokio_postgres::Error>(client)
        };
        let client = match role {
            Role::Export { snap, imported } => {
                let client = setup.await.ok();
                let mut id = None;
                if let Some(c) = &client {
                    id = c
                        .query_one("SELECT pg_export_snapshot()", &[])
                        .await
                        .ok()
                        .and_then(|r| r.try_get::<_, String>(0).ok())
                        .filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
                }
                let _ = snap.send(id.clone());
                // The other half must be in the snapshot before this one
                // can end its transaction (it waits here, blocking: this
                // connection has nothing to do meanwhile).
                if id.is_none() || imported.recv() != Ok(true) {
                    return None;
                }
                client?
            }
            Role::Import { snap, imported } => {
                let client = setup.await.ok();
                let id = snap.recv().ok().flatten();
                let mut ok = false;
                if let (Some(c), Some(id)) = (&client, id) {
                    ok = c
                        .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'"))
                        .await
                        .is_ok();
                }
                let _ = imported.send(ok);
                if !ok {
                    return None;
                }
                client?
            }
        };
        Some(copy_into(&client, table, kinds, prefix, sql).await)
    })
}

async fn copy_into(
    client: &tokio_postgres::Client,
    table: &Table,
    kinds: &[ColKind],
    prefix: &str,
    sql: &str,
) -> Result<Scanned> {
    use futures_util::StreamExt;
    let err = |e: tokio_postgres::Error| DbError {
        msg: pg_message(&e),
        retry: false,
    };
    let mut sc = Scanner::new(false, prefix)?;
    let mut parser =
        CopyParser::new(kinds.to_vec()).ok_or_else(|| Error::Failed("too many columns".into()))?;
    let mut bad = None;
    let read = async {
        let stream = client.copy_out(sql).await.map_err(err)?;
        futures_util::pin_mut!(stream);
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(err)?;
            match parser.feed(&piece, &mut |c| sc.row(c)) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        Ok(())
    }
    .await;
    finish(table, read, bad, &parser, sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream of rows of these cells (`None`: NULL).
    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&3i32.to_be_bytes());
        out.extend_from_slice(b"ext");
        for r in rows {
            out.extend_from_slice(&(r.len() as i16).to_be_bytes());
            for c in r {
                match c {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend_from_slice(b);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn parse_in_pieces(kinds: &[ColKind], data: &[u8], size: usize) -> Vec<Vec<RawCell<'static>>> {
        let mut p = CopyParser::new(kinds.to_vec()).unwrap();
        let mut got = Vec::new();
        for piece in data.chunks(size) {
            p.feed(piece, &mut |cells| {
                got.push(
                    cells
                        .iter()
                        .map(|c| match *c {
                            RawCell::Bytes(b) => RawCell::Bytes(b.to_vec().leak()),
                            RawCell::Int(n) => RawCell::Int(n),
                            RawCell::Null => RawCell::Null,
                        })
                        .collect(),
                );
                true
            })
            .unwrap();
        }
        assert!(p.complete());
        got
    }

    #[test]
    fn rows_parse_whatever_the_pieces() {
        use ColKind::*;
        let kinds = [Text, Int4, Text, Int8, Int2, Bool, Bytea];
        let rows = vec![
            vec![
                Some(b"/a/b".to_vec()),
                Some(7i32.to_be_bytes().to_vec()),
                Some("\"Zoë\" <1>\t\\N\n".as_bytes().to_vec()),
                Some((-5i64).to_be_bytes().to_vec()),
                Some(3i16.to_be_bytes().to_vec()),
                Some(vec![1]),
                Some(vec![0, 0xff]),
            ],
            vec![
                Some(Vec::new()),
                None,
                Some(vec![0xff, b'x']),
                None,
                None,
                Some(vec![0]),
                None,
            ],
        ];
        let data = stream(&rows);
        let want = vec![
            vec![
                RawCell::Bytes(b"/a/b"),
                RawCell::Int(7),
                RawCell::Bytes("\"Zoë\" <1>\t\\N\n".as_bytes()),
                RawCell::Int(-5),
                RawCell::Int(3),
                RawCell::Int(1),
                RawCell::Bytes(&[0, 0xff]),
            ],
            // Text that is not UTF-8 reads as NULL, as the driver's `&str`.
            vec![
                RawCell::Bytes(b""),
                RawCell::Null,
                RawCell::Null,
                RawCell::Null,
                RawCell::Null,
                RawCell::Int(0),
                RawCell::Null,
            ],
        ];
        for size in [1, 2, 3, 7, 19, 20, 64, data.len()] {
            assert_eq!(
                parse_in_pieces(&kinds, &data, size),
                want,
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn bad_streams_are_errors_not_panics() {
        let kinds = vec![ColKind::Int4];
        let mut p = CopyParser::new(kinds.clone()).unwrap();
        assert!(p
            .feed(b"PGCOPX\n\xff\r\n\0\0\0\0\0\0\0\0\0", &mut |_| true)
            .is_err());
        // An int4 of 3 bytes, a row of 2 columns.
        for row in [
            &[0u8, 1, 0, 0, 0, 3, 1, 2, 3][..],
            &[0, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let mut data = stream(&[]);
            data.truncate(data.len() - 2);
            data.extend_from_slice(row);
            let mut p = CopyParser::new(kinds.clone()).unwrap();
            assert!(p.feed(&data, &mut |_| true).is_err());
        }
        // Cut short: no rows, not complete.
        let data = stream(&[vec![Some(1i32.to_be_bytes().to_vec())]]);
        let mut p = CopyParser::new(kinds).unwrap();
        let mut n = 0;
        p.feed(&data[..data.len() - 3], &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!((n, p.complete()), (0, false));
    }
}

//! Rows of `Table::listing_columns()` packed into one buffer per folder: a
//! whole-table listing keeps them so (no allocation per field) and reads
//! them straight from the buffer.

use super::db::RawCell;
use super::table::MsgRow;
use std::borrow::Cow;

/// Columns of `Table::listing_columns()` kept per row: all but `dir`,
/// which the folder's buffer already stands for (a third of the bytes).
pub(super) const LISTING_WIDTH: usize = 7;

/// One box: folder name (`dir_name`) → its packed rows.
pub(super) type PackedBox = Vec<(String, Vec<u8>)>;

// Cell tags: the short forms keep a row about a quarter smaller (fewer
// bytes through the listing's temporary file and its buffers).
const NULL: u8 = 0;
const INT64: u8 = 1;
const BYTES: u8 = 2;
const INT32: u8 = 3;
/// Bytes of fewer than 256: a one-byte length.
const SHORT_BYTES: u8 = 4;

/// Appends one row's cells.
pub(super) fn put_row(out: &mut Vec<u8>, cells: &[RawCell<'_>]) {
    for c in cells {
        match *c {
            RawCell::Null => out.push(NULL),
            RawCell::Int(n) => match i32::try_from(n) {
                Ok(n) => {
                    out.push(INT32);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Err(_) => {
                    out.push(INT64);
                    out.extend_from_slice(&n.to_le_bytes());
                }
            },
            RawCell::Bytes(b) => match u8::try_from(b.len()) {
                Ok(n) => {
                    out.push(SHORT_BYTES);
                    out.push(n);
                    out.extend_from_slice(b);
                }
                Err(_) => {
                    out.push(BYTES);
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
            },
        }
    }
}

fn get_cell<'a>(buf: &mut &'a [u8]) -> Option<RawCell<'a>> {
    let (&tag, rest) = buf.split_first()?;
    let (cell, rest) = match tag {
        NULL => (RawCell::Null, rest),
        INT64 => {
            let (n, rest) = rest.split_at_checked(8)?;
            (RawCell::Int(i64::from_le_bytes(n.try_into().ok()?)), rest)
        }
        INT32 => {
            let (n, rest) = rest.split_at_checked(4)?;
            let n = i32::from_le_bytes(n.try_into().ok()?);
            (RawCell::Int(i64::from(n)), rest)
        }
        SHORT_BYTES => {
            let (&n, rest) = rest.split_first()?;
            let (b, rest) = rest.split_at_checked(usize::from(n))?;
            (RawCell::Bytes(b), rest)
        }
        _ => {
            let (n, rest) = rest.split_at_checked(4)?;
            let n = u32::from_le_bytes(n.try_into().ok()?) as usize;
            let (b, rest) = rest.split_at_checked(n)?;
            (RawCell::Bytes(b), rest)
        }
    };
    *buf = rest;
    Some(cell)
}

/// Calls `each` with the cells of every row of `buf` (`width` cells each).
pub(super) fn for_rows<'a>(mut buf: &'a [u8], width: usize, each: &mut dyn FnMut(&[RawCell<'a>])) {
    let mut cells = Vec::with_capacity(width);
    while !buf.is_empty() {
        cells.clear();
        for _ in 0..width {
            match get_cell(&mut buf) {
                Some(c) => cells.push(c),
                None => return,
            }
        }
        each(&cells);
    }
}

/// What a listing reads of a row, borrowed where the text is valid UTF-8;
/// the same values as `Table::parse_raw` gives `MsgRow`.
#[derive(Debug, Clone)]
pub struct RowView<'a> {
    pub msgnum: i32,
    pub callerid: Option<Cow<'a, str>>,
    pub origtime: Option<Num<'a>>,
    pub duration: Option<Num<'a>>,
    pub flag: Option<Cow<'a, str>>,
    pub msg_id: Option<Cow<'a, str>>,
    pub has_recording: bool,
}

fn text<'a>(c: &RawCell<'a>) -> Option<Cow<'a, str>> {
    match *c {
        RawCell::Null => None,
        RawCell::Int(n) => Some(Cow::Owned(n.to_string())),
        RawCell::Bytes(b) => Some(String::from_utf8_lossy(b)),
    }
}

/// A number column as the row has it: an integer column's value, or the
/// text of a varchar one (old schemas): no text made of an integer per row.
#[derive(Debug, Clone)]
pub enum Num<'a> {
    Int(i64),
    Text(Cow<'a, str>),
}

impl Num<'_> {
    /// As `metadata::leading_integer` reads the column's text.
    pub fn leading_integer(&self) -> Option<i64> {
        match self {
            // The digits of i64::MIN do not fit an i64 without their sign.
            Num::Int(n) => (*n != i64::MIN).then_some(*n),
            Num::Text(t) => crate::metadata::leading_integer(t),
        }
    }
}

fn num<'a>(c: &RawCell<'a>) -> Option<Num<'a>> {
    match *c {
        RawCell::Null => None,
        RawCell::Int(n) => Some(Num::Int(n)),
        RawCell::Bytes(b) => Some(Num::Text(String::from_utf8_lossy(b))),
    }
}

impl<'a> RowView<'a> {
    /// From the cells of `listing_columns()` after `dir` (a row only has
    /// a buffer when its `dir` was not NULL); `None` where
    /// `Table::parse_raw` gives no row.
    pub(super) fn from_cells(cells: &[RawCell<'a>]) -> Option<RowView<'a>> {
        let cell = |i: usize| cells.get(i).copied().unwrap_or(RawCell::Null);
        let msgnum = i32::try_from(cell(0).int()?).ok()?;
        Some(RowView {
            msgnum,
            callerid: text(&cell(1)),
            origtime: num(&cell(2)),
            duration: num(&cell(3)),
            flag: text(&cell(4)),
            msg_id: text(&cell(5)),
            has_recording: cell(6).int() == Some(1),
        })
    }

    pub fn from_row(r: &'a MsgRow) -> RowView<'a> {
        let b = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        RowView {
            msgnum: r.msgnum,
            callerid: b(&r.callerid),
            origtime: r.origtime.as_deref().map(|t| Num::Text(Cow::Borrowed(t))),
            duration: r.duration.as_deref().map(|t| Num::Text(Cow::Borrowed(t))),
            flag: b(&r.flag),
            msg_id: b(&r.msg_id),
            has_recording: r.has_recording,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_come_back_as_they_were_put() {
        let long = vec![b'x'; 300];
        let cells = [
            RawCell::Null,
            RawCell::Int(0),
            RawCell::Int(-1),
            RawCell::Int(i64::from(i32::MAX)),
            RawCell::Int(i64::from(i32::MIN)),
            RawCell::Int(i64::from(i32::MAX) + 1),
            RawCell::Int(i64::MIN),
            RawCell::Bytes(b""),
            RawCell::Bytes(&[0xff; 255]),
            RawCell::Bytes(&long),
        ];
        let mut buf = Vec::new();
        put_row(&mut buf, &cells);
        put_row(&mut buf, &cells);
        let mut rows = Vec::new();
        for_rows(&buf, cells.len(), &mut |c| rows.push(c.to_vec()));
        assert_eq!(rows, vec![cells.to_vec(), cells.to_vec()]);
    }

    #[test]
    fn integer_cells_read_as_their_text_would() {
        for n in [
            0,
            1,
            -1,
            42,
            1790000000,
            -5,
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ] {
            let text = n.to_string();
            assert_eq!(
                Num::Int(n).leading_integer(),
                Num::Text(Cow::Borrowed(&text)).leading_integer(),
                "{n}"
            );
        }
    }
}

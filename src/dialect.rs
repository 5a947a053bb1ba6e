//! Line-level lexer for Asterisk's config-file dialect (`main/config.c`).
//!
//! Asterisk reads `msgNNNN.txt` and `voicemail.conf` / `asterisk.conf` /
//! `users.conf` with the same code; this module owns the rules they share: the
//! 8192-byte line buffer, the UTF-8 BOM, `;` comments with the `\;` escape,
//! nestable `;-- … --;` block comments, trimming, and the split of a line into a
//! category header, a directive or a `key = value` / `key => value` /
//! `key += value` entry. The comment pass works on bytes with C-string
//! semantics on purpose: that is what makes its corner cases equal Asterisk's.

use std::borrow::Cow;

/// `fgets(buf, 8192)`: a line of 8191 bytes or more without its newline is skipped.
pub const LINE_BUFFER: usize = 8192;
/// Asterisk's `MAX_NESTED_COMMENTS`.
const MAX_NESTED_COMMENTS: i32 = 128;

/// Comment state carried from one line to the next (block comments span lines).
///
/// The depth is signed like Asterisk's: a stray `--;` outside a block comment
/// drives it negative, and Asterisk then ignores the following lines.
#[derive(Debug, Default, Clone)]
pub struct CommentState {
    depth: i32,
}

impl CommentState {
    /// True while lines are being swallowed by a block comment.
    pub fn in_comment(&self) -> bool {
        self.depth != 0
    }
}

fn c_strlen(buf: &[u8], from: usize) -> usize {
    buf[from..]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(buf.len() - from)
}

/// Removes comments from one line (without its line end) the way
/// `config_text_file_load()` does, and returns the trimmed text that Asterisk
/// would hand to `process_text_line()`, or `None` when nothing is left.
/// Borrows when there is nothing to remove or only a plain trailing comment
/// (most lines: `; Message Information file`, `callerchan=…;2`).
pub fn clean_line<'a>(raw: &'a [u8], state: &mut CommentState) -> Option<Cow<'a, [u8]>> {
    if state.depth == 0 {
        // Up to the first `;` or NUL: a NUL after a plain comment's `;` is
        // cut with the comment (the C string ends there either way).
        let text = match memchr::memchr2(b';', 0, raw) {
            None => raw,
            // The slow path's plain-comment case: not `\;`, not an opener
            // `;--` (unless `;---`), not a closer `--;`.
            Some(p) if raw[p] == b';' && plain_comment(raw, p) => &raw[..p],
            Some(_) => return clean_line_slow(raw, state).map(Cow::Owned),
        };
        let t = ast_strip(text);
        return (!t.is_empty()).then_some(Cow::Borrowed(t));
    }
    clean_line_slow(raw, state).map(Cow::Owned)
}

/// The `;` at `p` (the first of a line, with no NUL before it, outside a
/// block comment) starts a plain comment.
fn plain_comment(raw: &[u8], p: usize) -> bool {
    let at = |i: usize| raw.get(i).copied().unwrap_or(0);
    let escaped = p > 0 && raw[p - 1] == b'\\';
    let opener = at(p + 1) == b'-' && at(p + 2) == b'-' && at(p + 3) != b'-';
    let closer = p >= 2 && raw[p - 1] == b'-' && raw[p - 2] == b'-';
    !escaped && !opener && !closer
}

fn clean_line_slow(raw: &[u8], state: &mut CommentState) -> Option<Vec<u8>> {
    // C string: stops at the first NUL; keep a terminating NUL in the buffer.
    let raw_len = c_strlen(raw, 0);
    let mut buf = Vec::with_capacity(raw_len + 1);
    buf.extend_from_slice(&raw[..raw_len]);
    buf.push(0);

    let mut process_buf: Option<usize> = if state.depth != 0 { None } else { Some(0) };
    let mut new_buf = 0usize;
    loop {
        let len = c_strlen(&buf, new_buf);
        let Some(off) = buf[new_buf..new_buf + len].iter().position(|&b| b == b';') else {
            break;
        };
        let p = new_buf + off;
        let at = |i: usize| buf.get(i).copied().unwrap_or(0);
        if p > new_buf && buf[p - 1] == b'\\' {
            // Escaped semicolon: remove the backslash, keep the ';'.
            buf.remove(p - 1);
            new_buf = p;
        } else if at(p + 1) == b'-' && at(p + 2) == b'-' && at(p + 3) != b'-' {
            if state.depth < MAX_NESTED_COMMENTS {
                buf[p] = 0;
                new_buf = p + 3;
                state.depth += 1;
            } else {
                // Asterisk logs and rescans the same ';' forever; treat it as text.
                new_buf = p + 1;
            }
        } else if p >= new_buf + 2 && buf[p - 1] == b'-' && buf[p - 2] == b'-' {
            state.depth -= 1;
            new_buf = p + 1;
            if state.depth == 0 {
                match process_buf {
                    Some(start) => {
                        // Move what follows the closer over the comment.
                        let old_end = start + c_strlen(&buf, start);
                        let tail_len = c_strlen(&buf, new_buf) + 1;
                        buf.copy_within(new_buf..new_buf + tail_len, old_end);
                        new_buf = old_end;
                    }
                    None => process_buf = Some(new_buf),
                }
            }
        } else if state.depth == 0 {
            buf[p] = 0;
            new_buf = p;
        } else {
            new_buf = p + 1;
        }
    }
    let start = process_buf?;
    let text = &buf[start..start + c_strlen(&buf, start)];
    let trimmed = ast_strip(text);
    if trimmed.is_empty() {
        None
    } else {
        Some(trimmed.to_vec())
    }
}

/// `ast_strip()`: drops every byte below 33 (blanks and control characters) at
/// both ends; a non-breaking space is kept.
pub fn ast_strip(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b >= 33).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b >= 33).map_or(start, |e| e + 1);
    &s[start..end]
}

/// One meaningful line of a config file, after comment removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// `[name]` or `[name](options)`; `options` is the raw text inside the parentheses.
    Category {
        name: String,
        options: Option<String>,
    },
    /// `#include "file"`, `#tryinclude`, `#exec` or an unknown `#word`.
    Directive { name: String, arg: Option<String> },
    /// `key = value`, `key => value` (`object`), or `key += value` (`append`).
    Var(VarLine<'a>),
    /// A line Asterisk rejects (`fatal`: the whole file is invalid) or ignores.
    Invalid { reason: String, fatal: bool },
}

/// A variable line split the way `process_text_line()` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarLine<'a> {
    /// Stripped key; a leading backslash escape is removed.
    pub key: &'a [u8],
    /// Text after `=` / `=>`, untrimmed: `+=` appends it with its leading blanks.
    pub raw_value: &'a [u8],
    pub object: bool,
    pub append: bool,
}

impl<'a> VarLine<'a> {
    /// The value as stored for a plain assignment (stripped).
    pub fn value(&self) -> &'a [u8] {
        ast_strip(self.raw_value)
    }
}

/// Why a variable line is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarProblem {
    /// `\` followed by a blank or a byte >= 0x80: the file is invalid.
    BadEscape,
    /// No `=`: Asterisk warns and ignores the line.
    NoEquals,
}

/// The `key = value` split of `process_text_line()`, on bytes.
pub fn split_var(text: &[u8]) -> Result<VarLine<'_>, VarProblem> {
    let (body, skip) = match text.strip_prefix(b"\\") {
        // C `char` is signed on x86: a byte >= 0x80 is "< 33" there too.
        Some(rest) => match rest.first() {
            Some(&b) if (33..0x80).contains(&b) => (rest, 1),
            _ => return Err(VarProblem::BadEscape),
        },
        None => (text, 0),
    };
    let eq = memchr::memchr(b'=', &body[skip..])
        .map(|i| i + skip)
        .ok_or(VarProblem::NoEquals)?;
    let mut key = &body[..eq];
    let mut raw_value = &body[eq + 1..];
    let (mut append, mut object) = (false, false);
    if eq > skip && body[eq - 1] == b'+' {
        append = true;
        key = &body[..eq - 1];
    } else if let Some(v) = raw_value.strip_prefix(b">") {
        object = true;
        raw_value = v;
    }
    Ok(VarLine {
        key: ast_strip(key),
        raw_value,
        object,
        append,
    })
}

/// A raw line as [`clean_line`] then [`classify`] see it, when it is plain
/// (no NUL, no backslash, at most a plain comment): blank, or a variable.
#[derive(Debug, PartialEq, Eq)]
pub enum PlainLine<'a> {
    Blank,
    Var(VarLine<'a>),
    /// Anything else: ask `clean_line` and `classify`.
    Other,
}

/// One pass over a raw line outside a block comment: what `clean_line` and
/// `classify` would make of it when that is a blank or a `key=value` line
/// (most lines of a message file), else [`PlainLine::Other`].
pub fn plain_line(raw: &[u8]) -> PlainLine<'_> {
    let mut eq = None;
    let mut end = raw.len();
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'=' if eq.is_none() => eq = Some(i),
            b';' if plain_comment(raw, i) => {
                end = i;
                break;
            }
            b';' | b'\\' | 0 => return PlainLine::Other,
            _ => {}
        }
    }
    let text = ast_strip(&raw[..end]);
    let Some(&first) = text.first() else {
        return PlainLine::Blank;
    };
    // Blanks stripped from the front are below `=`: the first `=` is in `text`.
    let (Some(eq), false) = (eq, matches!(first, b'[' | b'#')) else {
        return PlainLine::Other;
    };
    let eq = eq - (text.as_ptr() as usize - raw.as_ptr() as usize);
    let (mut key, mut raw_value) = (&text[..eq], &text[eq + 1..]);
    let (mut append, mut object) = (false, false);
    if eq > 0 && text[eq - 1] == b'+' {
        append = true;
        key = &text[..eq - 1];
    } else if let Some(v) = raw_value.strip_prefix(b">") {
        object = true;
        raw_value = v;
    }
    let key = ast_strip(key);
    if key.is_empty() {
        return PlainLine::Other;
    }
    PlainLine::Var(VarLine {
        key,
        raw_value,
        object,
        append,
    })
}

/// Splits one cleaned line (output of [`clean_line`]) as `process_text_line()` does.
pub fn classify(line: &[u8]) -> Line<'_> {
    if !matches!(line.first(), Some(b'[' | b'#')) {
        return classify_var(line);
    }
    let text = String::from_utf8_lossy(line);
    let cur: &str = &text;
    if let Some(rest) = cur.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Line::Invalid {
                reason: "no closing ']'".into(),
                fatal: true,
            };
        };
        let name = rest[..close].to_string();
        let after = &rest[close + 1..];
        let options = match after.strip_prefix('(') {
            Some(opts) => match opts.find(')') {
                Some(end) => Some(opts[..end].to_string()),
                None => {
                    return Line::Invalid {
                        reason: "no closing ')'".into(),
                        fatal: true,
                    }
                }
            },
            None => None,
        };
        return Line::Category { name, options };
    }
    if let Some(rest) = cur.strip_prefix('#') {
        let end = rest.find(|c: char| c as u32 <= 32).unwrap_or(rest.len());
        let name = rest[..end].to_string();
        let arg = rest[end..].trim();
        let arg = if arg.is_empty() {
            None
        } else {
            Some(dequote_directive(arg).to_string())
        };
        return Line::Directive { name, arg };
    }
    classify_var(line)
}

fn classify_var(line: &[u8]) -> Line<'_> {
    match split_var(line) {
        Ok(v) if v.key.is_empty() => Line::Invalid {
            reason: "no variable name".into(),
            fatal: false,
        },
        Ok(v) => Line::Var(v),
        Err(VarProblem::BadEscape) => Line::Invalid {
            reason: "invalid escape: '\\' must be followed by a visible character".into(),
            fatal: true,
        },
        Err(VarProblem::NoEquals) => Line::Invalid {
            reason: "no '=' (equal sign)".into(),
            fatal: false,
        },
    }
}

/// `#include "file"` / `#include <file>`: strip one pair of quotes or brackets.
fn dequote_directive(arg: &str) -> &str {
    let close = match arg.as_bytes()[0] {
        b'"' => '"',
        b'<' => '>',
        _ => return arg,
    };
    if arg.len() >= 2 && arg.ends_with(close) {
        &arg[1..arg.len() - 1]
    } else if arg.len() == 1 {
        // A lone quote: Asterisk strips it and is left with nothing.
        ""
    } else {
        arg
    }
}

/// Splits a file's bytes into lines the way `fgets()` sees them: on `\n`, with
/// the BOM removed from line 1 and over-long lines reported as `None`.
pub fn lines(data: &[u8]) -> impl Iterator<Item = (usize, Option<&[u8]>)> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut rest = data;
    let mut lineno = 0usize;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        lineno += 1;
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        // fgets keeps the '\n' in its 8192-byte buffer, so 8190 bytes + '\n' fit.
        let fits = line.len() < LINE_BUFFER - 1;
        Some((lineno, fits.then_some(line)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> Option<String> {
        let mut st = CommentState::default();
        clean_line(s.as_bytes(), &mut st).map(|v| String::from_utf8(v.into_owned()).unwrap())
    }

    #[test]
    fn comments_and_escapes() {
        assert_eq!(clean("; Message Information file"), None);
        assert_eq!(
            clean("callerchan=Local/2202@leave-compta-0000000c;2").as_deref(),
            Some("callerchan=Local/2202@leave-compta-0000000c")
        );
        assert_eq!(clean(r"a=b\;c ; d").as_deref(), Some("a=b;c"));
        assert_eq!(clean("   x = y   ").as_deref(), Some("x = y"));
        assert_eq!(clean("  ;").as_deref(), None);
        assert_eq!(clean(r"a=\\;x").as_deref(), Some(r"a=\;x"));
    }

    #[test]
    fn block_comments_span_lines() {
        let mut st = CommentState::default();
        assert_eq!(
            clean_line(b"a=1 ;-- start", &mut st).as_deref(),
            Some(&b"a=1"[..])
        );
        assert!(st.in_comment());
        assert_eq!(clean_line(b"b=2", &mut st), None);
        assert_eq!(
            clean_line(b"still --; c=3", &mut st).as_deref(),
            Some(&b"c=3"[..])
        );
        assert!(!st.in_comment());
        let mut st = CommentState::default();
        assert_eq!(
            clean_line(b"a=1;-- x --;2", &mut st).as_deref(),
            Some(&b"a=12"[..])
        );
        // ";---" is not a block opener: plain comment.
        let mut st = CommentState::default();
        assert_eq!(
            clean_line(b"a=1;--- x", &mut st).as_deref(),
            Some(&b"a=1"[..])
        );
        assert!(!st.in_comment());
    }

    #[test]
    fn stray_block_closer_swallows_following_lines_like_asterisk() {
        let mut st = CommentState::default();
        // Asterisk keeps this whole line (comment depth goes to -1) ...
        assert_eq!(
            clean_line(b"a=x--;y", &mut st).as_deref(),
            Some(&b"a=x--;y"[..])
        );
        // ... and then ignores the rest of the file.
        assert_eq!(clean_line(b"b=2", &mut st), None);
    }

    #[test]
    fn classify_lines() {
        assert_eq!(
            classify(b"[message]"),
            Line::Category {
                name: "message".into(),
                options: None
            }
        );
        assert_eq!(
            classify(b"[tpl](!)"),
            Line::Category {
                name: "tpl".into(),
                options: Some("!".into())
            }
        );
        let Line::Var(v) = classify(b"1101 => 1234, Utilisateur1") else {
            panic!()
        };
        assert_eq!(
            (v.key, v.value(), v.object, v.append),
            (&b"1101"[..], &b"1234, Utilisateur1"[..], true, false)
        );
        let Line::Var(v) = classify(b"a += b") else {
            panic!()
        };
        assert_eq!(
            (v.key, v.raw_value, v.append),
            (&b"a"[..], &b" b"[..], true)
        );
        let Line::Var(v) = classify(b"origdate=Thu Nov 26 10:32:00 AM UTC 2026") else {
            panic!()
        };
        assert_eq!(v.value(), b"Thu Nov 26 10:32:00 AM UTC 2026");
        let Line::Var(v) = classify(b"\\=k=v") else {
            panic!()
        };
        assert_eq!((v.key, v.value()), (&b"=k"[..], &b"v"[..]));
        assert!(matches!(
            classify(b"\\\xc3\xa9=v"),
            Line::Invalid { fatal: true, .. }
        ));
        assert_eq!(
            classify(b"#include \"users.conf\""),
            Line::Directive {
                name: "include".into(),
                arg: Some("users.conf".into())
            }
        );
        assert!(matches!(
            classify(b"[broken"),
            Line::Invalid { fatal: true, .. }
        ));
        assert!(matches!(
            classify(b"novalue"),
            Line::Invalid { fatal: false, .. }
        ));
        assert!(matches!(
            classify(b"=x"),
            Line::Invalid { fatal: false, .. }
        ));
    }

    #[test]
    fn borrowed_cleaning_equals_the_c_string_pass() {
        // Every line of up to 6 bytes from the bytes that matter, from a
        // fresh state: the fast path gives what the slow one gives.
        each_line(b"a;-\\ =\0", |line| {
            let (mut fast, mut slow) = (CommentState::default(), CommentState::default());
            let got = clean_line(line, &mut fast).map(Cow::into_owned);
            assert_eq!(got, clean_line_slow(line, &mut slow), "{line:?}");
            assert_eq!(fast.depth, slow.depth, "{line:?}");
        });
    }

    /// Every line of up to 6 bytes from `alphabet`.
    fn each_line(alphabet: &[u8], mut f: impl FnMut(&[u8])) {
        let mut line = Vec::new();
        for len in 0..=6u32 {
            for mut n in 0..(alphabet.len() as u32).pow(len) {
                line.clear();
                for _ in 0..len {
                    line.push(alphabet[(n % alphabet.len() as u32) as usize]);
                    n /= alphabet.len() as u32;
                }
                f(&line);
            }
        }
    }

    #[test]
    fn plain_lines_read_as_the_general_path_reads_them() {
        let (mut vars, mut blanks) = (0, 0);
        each_line(b"a;-\\ =+>[#\0", |line| {
            let general = clean_line(line, &mut CommentState::default());
            match plain_line(line) {
                PlainLine::Other => {}
                PlainLine::Blank => {
                    blanks += 1;
                    assert_eq!(general, None, "{line:?}");
                }
                PlainLine::Var(v) => {
                    vars += 1;
                    let general = general.unwrap_or_else(|| panic!("{line:?}"));
                    assert_eq!(classify(&general), Line::Var(v), "{line:?}");
                }
            }
        });
        assert!(vars > 10_000 && blanks > 100, "{vars} {blanks}");
    }

    #[test]
    fn line_splitting() {
        let data = b"\xEF\xBB\xBF;\r\n[message]\nk=v";
        let v: Vec<_> = lines(data).collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].1, Some(&b";\r"[..]));
        assert_eq!(v[2].1, Some(&b"k=v"[..]));
        let long = vec![b'a'; 9000];
        assert_eq!(lines(&long).next().unwrap().1, None);
    }
}

//! Caller ID text as stored in `callerid=`: split it the way `ast_callerid_parse()`
//! does (`main/callerid.c`) and build it the way `ast_callerid_merge()` does.

/// A caller ID split into name and number; either may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CallerId {
    pub name: Option<String>,
    pub number: Option<String>,
}

use std::borrow::Cow;

const BLANKS: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

/// `ast_strip_quoted(s, "\"", "\"")`: trim, then drop one pair of surrounding quotes.
fn strip_quoted(s: &str) -> (&str, bool) {
    let s = s.trim_matches(BLANKS);
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        (&s[1..s.len() - 1], true)
    } else if s == "\"" {
        // A lone quote is both the opening and the closing one in Asterisk's code.
        ("", true)
    } else {
        (s, false)
    }
}

/// `ast_unescape_quoted()`: a backslash makes the next character literal.
fn unescape_quoted(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `ast_shrink_phone_number()`: drop `( )`, `-` outside brackets, `.` unless last.
fn shrink_phone_number(n: &str) -> Cow<'_, str> {
    // Copied only from the first character dropped.
    let mut out: Option<String> = None;
    let mut bracketed = 0i32;
    for (i, c) in n.char_indices() {
        let keep = match c {
            '[' => {
                bracketed += 1;
                true
            }
            ']' => {
                bracketed -= 1;
                true
            }
            '-' => bracketed != 0,
            '.' => i + 1 == n.len(),
            '(' | ' ' | ')' => false,
            _ => true,
        };
        match (&mut out, keep) {
            (Some(o), true) => o.push(c),
            (None, false) => out = Some(n[..i].to_string()),
            _ => {}
        }
    }
    out.map_or(Cow::Borrowed(n), Cow::Owned)
}

fn is_phone_number(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | '+'))
}

fn non_empty(s: Cow<'_, str>) -> Option<Cow<'_, str>> {
    (!s.is_empty()).then_some(s)
}

/// [`CallerId`] borrowed from the text it was split from where it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdRef<'a> {
    pub name: Option<Cow<'a, str>>,
    pub number: Option<Cow<'a, str>>,
}

impl CallerId {
    /// Splits a `callerid=` value exactly like `ast_callerid_parse()`.
    ///
    /// `Unknown` (what Asterisk writes when there was no caller ID) is a name for
    /// Asterisk too; [`CallerId::is_unknown`] tells it apart.
    pub fn parse(input: &str) -> CallerId {
        let r = CallerId::parse_ref(input);
        CallerId {
            name: r.name.map(Cow::into_owned),
            number: r.number.map(Cow::into_owned),
        }
    }

    /// [`CallerId::parse`] without a copy of what needs no change (listings).
    pub fn parse_ref(input: &str) -> CallerIdRef<'_> {
        let (instr, quotes_stripped) = strip_quoted(input);
        if let Some(ls) = instr.rfind('<') {
            let after = &instr[ls + 1..];
            let number = match after.rfind('>') {
                Some(le) => &after[..le],
                None => after,
            };
            let (name, _) = strip_quoted(&instr[..ls]);
            CallerIdRef {
                name: non_empty(unescape_quoted(name)),
                number: non_empty(Cow::Borrowed(number)),
            }
        } else {
            // Asterisk shrinks a 256-byte copy; longer input is truncated there.
            let shrunk = shrink_phone_number(truncate_bytes(instr, 255));
            if !quotes_stripped && is_phone_number(&shrunk) {
                CallerIdRef {
                    name: None,
                    number: Some(shrunk),
                }
            } else {
                let (name, _) = strip_quoted(instr);
                CallerIdRef {
                    name: non_empty(unescape_quoted(name)),
                    number: None,
                }
            }
        }
    }

    /// `ast_callerid_merge(name, number, "Unknown")`: the text Asterisk writes.
    pub fn merge(&self) -> String {
        let name = self.name.as_deref().filter(|s| !s.is_empty());
        let number = self.number.as_deref().filter(|s| !s.is_empty());
        match (name, number) {
            (Some(n), Some(num)) => {
                // ast_escape_quoted() on a name cut to 127 bytes.
                let mut esc = String::with_capacity(n.len() + 2);
                for c in truncate_bytes(n, 127).chars() {
                    if c == '"' || c == '\\' {
                        esc.push('\\');
                    }
                    esc.push(c);
                }
                format!("\"{esc}\" <{num}>")
            }
            (Some(n), None) => n.to_string(),
            (None, Some(num)) => num.to_string(),
            (None, None) => "Unknown".to_string(),
        }
    }

    /// True for Asterisk's placeholder when the call had no caller ID.
    pub fn is_unknown(&self) -> bool {
        self.number.is_none() && self.name.as_deref() == Some("Unknown")
    }
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (Option<&'static str>, Option<&'static str>) {
        let c = CallerId::parse(s);
        (
            c.name.map(|s| &*Box::leak(s.into_boxed_str())),
            c.number.map(|s| &*Box::leak(s.into_boxed_str())),
        )
    }

    #[test]
    fn forms_asterisk_writes() {
        assert_eq!(
            p("\"Thomas Girard\" <0755667788>"),
            (Some("Thomas Girard"), Some("0755667788"))
        );
        assert_eq!(p("0298765401"), (None, Some("0298765401")));
        assert_eq!(p("Unknown"), (Some("Unknown"), None));
        assert!(CallerId::parse("Unknown").is_unknown());
        assert_eq!(
            p("\"Karim Benali\" <+33612345670>"),
            (Some("Karim Benali"), Some("+33612345670"))
        );
        assert_eq!(
            p("\"Hélène Lefèvre\" <0611223344>"),
            (Some("Hélène Lefèvre"), Some("0611223344"))
        );
    }

    #[test]
    fn odd_forms() {
        assert_eq!(p("Bob <100"), (Some("Bob"), Some("100")));
        assert_eq!(p("<100>"), (None, Some("100")));
        assert_eq!(p("\"A \\\"B\\\"\" <1>"), (Some("A \"B\""), Some("1")));
        assert_eq!(p("(555) 123-4567"), (None, Some("5551234567")));
        assert_eq!(p("\"5551234\""), (Some("5551234"), None));
        assert_eq!(p("Alice"), (Some("Alice"), None));
        assert_eq!(p(""), (None, None));
        assert_eq!(p("\""), (None, None));
    }

    #[test]
    fn merge_matches_asterisk() {
        let c = CallerId {
            name: Some("Zoé \"Z\" Lambert".into()),
            number: Some("0561234567".into()),
        };
        assert_eq!(c.merge(), "\"Zoé \\\"Z\\\" Lambert\" <0561234567>");
        assert_eq!(CallerId::parse(&c.merge()), c);
        assert_eq!(CallerId::default().merge(), "Unknown");
        let n = CallerId {
            name: None,
            number: Some("3900".into()),
        };
        assert_eq!(n.merge(), "3900");
    }
}

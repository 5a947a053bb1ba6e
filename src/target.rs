//! TARGET arguments: `ctx[/box[/Folder[/N]]]`, `box[@ctx][/Folder[/N]]`, a bare
//! word (context, else a box searched in every context) or a `msg_id`.
//!
//! Parsing is purely syntactic and rejects anything that could leave the spool;
//! resolution checks what exists through the store.

use crate::error::{Error, Result};
use crate::spool::{Context, Folder, MailboxId, MsgNum};
use crate::store::MailboxStore;

/// What a target names, after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Spool,
    Context(Context),
    Mailbox(MailboxId),
    Folder(MailboxId, Folder),
    Message(MailboxId, Folder, MsgNum),
}

impl Target {
    pub fn mailbox(&self) -> Option<&MailboxId> {
        match self {
            Target::Mailbox(mb) | Target::Folder(mb, _) | Target::Message(mb, _, _) => Some(mb),
            _ => None,
        }
    }
}

/// The written form, before looking at the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    /// One word without `/` or `@`.
    Bare(String),
    /// `ctx/box[/folder[/n]]`.
    Path {
        context: String,
        mailbox: String,
        rest: Vec<String>,
    },
    /// `box@ctx[/folder[/n]]`.
    At {
        mailbox: String,
        context: String,
        rest: Vec<String>,
    },
}

/// `msg_id` shapes Asterisk writes: `<epoch>-<8 hex>` (11.x+ and 12+) and the
/// early 11.0 `<epoch>-<signed decimal>`.
pub fn looks_like_msg_id(s: &str) -> bool {
    let Some((epoch, tail)) = s.split_once('-') else {
        return false;
    };
    if epoch.len() < 9 || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let hex = tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit());
    let dec = tail.strip_prefix('-').unwrap_or(tail);
    hex || (!dec.is_empty() && dec.bytes().all(|b| b.is_ascii_digit()))
}

fn unsafe_target(t: &str, why: &str) -> Error {
    Error::Usage(format!(
        "target \"{}\" {why}: targets name things inside the spool, like compta/1202 or 1202@compta",
        t.escape_debug()
    ))
}

fn parse(t: &str) -> Result<Parsed> {
    if t.is_empty() {
        return Err(unsafe_target(t, "is empty"));
    }
    if t.contains('\0') {
        return Err(unsafe_target(t, "contains a NUL byte"));
    }
    if t.starts_with('/') {
        return Err(unsafe_target(t, "is an absolute path"));
    }
    let trimmed = t.strip_suffix('/').unwrap_or(t);
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(unsafe_target(t, "contains a relative path component"));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(unsafe_target(t, "has an empty path component"));
    }
    if parts.len() > 4 {
        return Err(unsafe_target(t, "has too many parts"));
    }
    let rest = |from: usize| {
        parts[from..]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    if let Some((mailbox, context)) = parts[0].split_once('@') {
        if mailbox.is_empty() || context.is_empty() || context.contains('@') {
            return Err(Error::Usage(format!(
                "target \"{t}\": write box@context, e.g. 1202@compta"
            )));
        }
        if [mailbox, context].iter().any(|p| *p == ".." || *p == ".") {
            return Err(unsafe_target(t, "contains a relative path component"));
        }
        if parts.len() > 3 {
            return Err(unsafe_target(t, "has too many parts"));
        }
        return Ok(Parsed::At {
            mailbox: mailbox.to_string(),
            context: context.to_string(),
            rest: rest(1),
        });
    }
    if parts.iter().skip(1).any(|p| p.contains('@')) {
        return Err(Error::Usage(format!(
            "target \"{t}\": '@' only goes in the first part (box@context)"
        )));
    }
    if parts.len() == 1 {
        return Ok(Parsed::Bare(parts[0].to_string()));
    }
    Ok(Parsed::Path {
        context: parts[0].to_string(),
        mailbox: parts[1].to_string(),
        rest: rest(2),
    })
}

/// Checks TARGET syntax only (no spool access) and returns its parts in path
/// order: `[word]`, or `[context, box, folder?, number?]` for both the
/// `ctx/box/…` and the `box@ctx/…` forms. For tests and fuzzing.
pub fn parse_target_syntax(t: &str) -> Result<Vec<String>> {
    Ok(match parse(t)? {
        Parsed::Bare(word) => vec![word],
        Parsed::Path {
            context,
            mailbox,
            rest,
        }
        | Parsed::At {
            mailbox,
            context,
            rest,
        } => [context, mailbox].into_iter().chain(rest).collect(),
    })
}

/// Resolves targets against a store; `configured` lists boxes that exist in
/// the configuration (they are valid targets even without a directory yet).
pub struct Resolver<'a> {
    pub store: &'a dyn MailboxStore,
    pub configured: &'a dyn Fn(&MailboxId) -> bool,
    pub configured_named: &'a dyn Fn(&str) -> Vec<MailboxId>,
    /// A context with a box in the configuration (with SQL storage a
    /// context has no rows until its first message).
    pub configured_context: &'a dyn Fn(&Context) -> bool,
}

impl Resolver<'_> {
    /// Resolves one TARGET argument into one or more targets (several only for
    /// a `msg_id` shared by copies).
    pub fn resolve(&self, t: &str) -> Result<Vec<Target>> {
        match parse(t)? {
            Parsed::Bare(word) => {
                if let Ok(ctx) = Context::new(&word) {
                    if self.store.context_exists(&ctx) || (self.configured_context)(&ctx) {
                        return Ok(vec![Target::Context(ctx)]);
                    }
                }
                if looks_like_msg_id(&word) {
                    return self.find_msg_id(&word);
                }
                Ok(vec![Target::Mailbox(self.find_box(&word, t)?)])
            }
            Parsed::Path {
                context,
                mailbox,
                rest,
            } => {
                let ctx = self.context(&context, t)?;
                let configured =
                    MailboxId::new(ctx.clone(), &mailbox).is_ok_and(|mb| (self.configured)(&mb));
                if configured || self.store.context_exists(&ctx) {
                    let mb = self.mailbox(ctx, &mailbox, t)?;
                    return Ok(vec![self.below(mb, &rest, t)?]);
                }
                // Not a context: `box/Folder[/N]` with the box searched
                // everywhere, when the second part is a folder name.
                if Folder::known(&mailbox).is_none() {
                    return Err(Error::NotFound(format!(
                        "no context \"{ctx}\" in {}{}",
                        self.store.describe(),
                        self.list_contexts()
                    )));
                }
                let mb = self.find_box(&context, t)?;
                let mut rest2 = vec![mailbox];
                rest2.extend(rest);
                Ok(vec![self.below(mb, &rest2, t)?])
            }
            Parsed::At {
                mailbox,
                context,
                rest,
            } => {
                let ctx = self.context(&context, t)?;
                let mb = self.mailbox(ctx, &mailbox, t)?;
                Ok(vec![self.below(mb, &rest, t)?])
            }
        }
    }

    fn context(&self, name: &str, t: &str) -> Result<Context> {
        Context::new(name).map_err(|e| Error::Usage(format!("target \"{t}\": {e}")))
    }

    fn mailbox(&self, ctx: Context, name: &str, t: &str) -> Result<MailboxId> {
        let mb =
            MailboxId::new(ctx, name).map_err(|e| Error::Usage(format!("target \"{t}\": {e}")))?;
        if self.store.mailbox_exists(&mb) || (self.configured)(&mb) {
            return Ok(mb);
        }
        if !self.store.context_exists(&mb.context)
            && !(self.configured_named)(name)
                .iter()
                .any(|m| m.context == mb.context)
        {
            return Err(Error::NotFound(format!(
                "no context \"{}\" in {}{}",
                mb.context,
                self.store.describe(),
                self.list_contexts()
            )));
        }
        Err(Error::NotFound(format!(
            "no mailbox {mb}: not in {} and not in voicemail.conf",
            self.store.describe()
        )))
    }

    /// What a candidate box holds, for an ambiguity message.
    fn holds(&self, mb: &MailboxId) -> String {
        if !self.store.mailbox_exists(mb) {
            return "configured, no folder on disk".into();
        }
        match self.store.count(mb) {
            Ok(c) if c.new + c.urgent + c.old == 0 => "no new or old messages".into(),
            Ok(c) => format!("{} new, {} old", c.new + c.urgent, c.old),
            Err(_) => "unreadable".into(),
        }
    }

    fn list_contexts(&self) -> String {
        match self.store.contexts() {
            Ok(c) if !c.is_empty() => format!(
                " (contexts: {})",
                c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ),
            _ => String::new(),
        }
    }

    /// A box name searched in every context (spool and configuration).
    fn find_box(&self, name: &str, t: &str) -> Result<MailboxId> {
        let mut found: Vec<MailboxId> = Vec::new();
        for ctx in self.store.contexts()? {
            if let Ok(mb) = MailboxId::new(ctx, name) {
                if self.store.mailbox_exists(&mb) {
                    found.push(mb);
                }
            }
        }
        for mb in (self.configured_named)(name) {
            if !found.contains(&mb) {
                found.push(mb);
            }
        }
        found.sort();
        // users.conf makes every user a box of its userscontext too (Asterisk
        // 22 and older): a box only configured there, with no folder on disk,
        // does not make a name ambiguous when exactly one candidate has one.
        let on_disk: Vec<&MailboxId> = found
            .iter()
            .filter(|mb| self.store.mailbox_exists(mb))
            .collect();
        if found.len() > 1 && on_disk.len() == 1 {
            return Ok(on_disk[0].clone());
        }
        match found.len() {
            0 => Err(Error::NotFound(format!(
                "\"{t}\" is neither a context nor a mailbox in {}{}",
                self.store.describe(),
                self.list_contexts()
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(Error::Ambiguous(format!(
                "\"{t}\" is a mailbox in several contexts: {}; say which with box@context, e.g. {}",
                found
                    .iter()
                    .map(|m| format!("{m} ({})", self.holds(m)))
                    .collect::<Vec<_>>()
                    .join(", "),
                found[0]
            ))),
        }
    }

    fn below(&self, mb: MailboxId, rest: &[String], t: &str) -> Result<Target> {
        let Some(fname) = rest.first() else {
            return Ok(Target::Mailbox(mb));
        };
        let folder = match Folder::known(fname) {
            Some(f) => f,
            None => {
                let f = Folder::from_dir_name(fname)
                    .map_err(|e| Error::Usage(format!("target \"{t}\": {e}")))?;
                if !self.store.folders(&mb).unwrap_or_default().contains(&f) {
                    return Err(Error::NotFound(format!(
                        "unknown folder \"{fname}\" in {mb} (folders: {})",
                        Folder::KNOWN
                            .iter()
                            .map(|f| f.dir_name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                f
            }
        };
        let Some(n) = rest.get(1) else {
            return Ok(Target::Folder(mb, folder));
        };
        let num = MsgNum::parse(n).ok_or_else(|| {
            Error::Usage(format!(
                "target \"{t}\": \"{n}\" is not a message number (use 3, 0003 or msg0003; 0–9998)"
            ))
        })?;
        Ok(Target::Message(mb, folder, num))
    }

    /// Every message whose `msg_id` is `id` (copies share it).
    fn find_msg_id(&self, id: &str) -> Result<Vec<Target>> {
        let mut found = Vec::new();
        for ctx in self.store.contexts()? {
            for mb in self.store.mailboxes(&ctx)? {
                for folder in self.store.folders(&mb)? {
                    let scan = self.store.scan_folder(&mb, &folder)?;
                    for m in scan.messages.iter().filter(|m| m.txt) {
                        if let Ok(meta) = self.store.read_metadata(&mb, &folder, m.num) {
                            if meta.msg_id() == Some(id) {
                                found.push(Target::Message(mb.clone(), folder.clone(), m.num));
                            }
                        }
                    }
                }
            }
        }
        if found.is_empty() {
            return Err(Error::NotFound(format!(
                "no message with msg_id {id} in {}",
                self.store.describe()
            )));
        }
        Ok(found)
    }
}

/// Describes a target in the spool's own words (`compta/1202/INBOX/msg0003`).
pub fn describe(t: &Target) -> String {
    match t {
        Target::Spool => "the whole spool".into(),
        Target::Context(c) => c.to_string(),
        Target::Mailbox(mb) => format!("{}/{}", mb.context, mb.mailbox()),
        Target::Folder(mb, f) => format!("{}/{}/{f}", mb.context, mb.mailbox()),
        Target::Message(mb, f, n) => format!("{}/{}/{f}/{}", mb.context, mb.mailbox(), n.stem()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert_eq!(parse("compta").unwrap(), Parsed::Bare("compta".into()));
        assert_eq!(
            parse("1202@compta/old/3").unwrap(),
            Parsed::At {
                mailbox: "1202".into(),
                context: "compta".into(),
                rest: vec!["old".into(), "3".into()]
            }
        );
        assert_eq!(
            parse("compta/1202/").unwrap(),
            Parsed::Path {
                context: "compta".into(),
                mailbox: "1202".into(),
                rest: vec![]
            }
        );
        for bad in [
            "",
            "/etc",
            "../x",
            "compta/../../etc",
            "a//b",
            "a/b/c/d/e",
            "x\0",
            "@c",
            "b@",
            "a/b@c",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn msg_ids() {
        assert!(looks_like_msg_id("1795689259-0000000b"));
        assert!(looks_like_msg_id("1357000000--123456"));
        assert!(!looks_like_msg_id("1202"));
        assert!(!looks_like_msg_id("compta-1"));
    }
}

//! Who may use the web interface: box owners' PINs as Asterisk accepts them,
//! admins' own passwords (argon2 hashes in a file the admin names),
//! sessions (random cookie, CSRF token, expiry) and login throttling.

use crate::config::{MailboxConf, VoicemailConf};
use crate::spool::{Context, MailboxId, Spool};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The largest secret.conf read (Asterisk writes a few lines).
const SECRET_CONF_CAP: u64 = 64 * 1024;

/// The PIN Asterisk would ask for this box (spec §9.3): `secret.conf` with
/// `passwordlocation=spooldir`, else voicemail.conf's, the leading `-` skipped.
/// `None`: the box has no PIN (Asterisk asks none) or one nobody can type;
/// the web interface refuses such boxes rather than letting anyone in.
pub fn expected_pin(vc: &VoicemailConf, spool: &Spool, mb: &MailboxConf) -> Option<String> {
    let spooldir = mb
        .option("passwordlocation")
        .or_else(|| {
            vc.general
                .vars
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case("passwordlocation"))
                .map(|(_, v)| v.as_str())
        })
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("spooldir"));
    let mut pin = mb.password.clone();
    if spooldir {
        if let Some(p) = secret_conf_pin(spool, mb) {
            pin = p;
        }
    }
    let pin = pin.strip_prefix('-').unwrap_or(&pin).to_string();
    if pin.is_empty() || pin.starts_with('*') {
        return None;
    }
    Some(pin)
}

/// `password` of `[general]` in the box's `secret.conf`, read like any spool file.
fn secret_conf_pin(spool: &Spool, mb: &MailboxConf) -> Option<String> {
    let id = MailboxId::new(Context::new(&mb.context).ok()?, &mb.mailbox).ok()?;
    let path = spool.mailbox_dir(&id).join("secret.conf");
    let data = crate::fsutil::read_capped(&path, SECRET_CONF_CAP).ok()?;
    let dir = path.parent()?.to_path_buf();
    let conf = crate::conf::parse_bytes(&data, &path, &dir).ok()?;
    conf.get("general", "password")
        .map(|p| p.trim().to_string())
}

/// Compares in constant time (hashes first, so the length leaks nothing either).
pub fn pin_matches(given: &str, expected: Option<&str>) -> bool {
    let h = |s: &str| Sha256::digest(s.as_bytes());
    // A box without a usable PIN still costs the same comparison.
    let exp = h(expected.unwrap_or("\u{0}no pin"));
    let same: bool = h(given).ct_eq(&exp).into();
    same && expected.is_some()
}

/// 32 random bytes as hex, from the operating system's generator.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random generator failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A box owner: that box only.
    Owner(MailboxId),
    /// An admin of the admins file: every box.
    Admin(String),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Owner(mb) => write!(f, "{mb}"),
            Who::Admin(name) => write!(f, "admin {name}"),
        }
    }
}

/// The largest admins file read.
const ADMINS_CAP: u64 = 1024 * 1024;

/// An admin name: what a login form's `mailbox` field holds when it is no
/// box (no `@`), so the two never meet.
pub fn valid_admin_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The admins file: `NAME:HASH` lines (an argon2 PHC string, as
/// `serve --hash-password NAME` prints), `#` comments and blank lines.
/// An error names the file and the line.
pub fn load_admins(path: &Path) -> Result<Vec<(String, String)>, String> {
    use argon2::password_hash::PasswordHash;
    let data = crate::fsutil::read_capped(path, ADMINS_CAP)
        .map_err(|e| format!("admins file {}: {e}", path.display()))?;
    let text = String::from_utf8(data)
        .map_err(|_| format!("admins file {}: not UTF-8 text", path.display()))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| {
            format!(
                "admins file {} line {}: {why}; each line is NAME:HASH as `vmtool serve --hash-password NAME` prints it",
                path.display(),
                i + 1
            )
        };
        let (name, hash) = line.split_once(':').ok_or_else(|| bad("no ':'"))?;
        if !valid_admin_name(name) {
            return Err(bad(
                "the name may have letters, digits, '.', '_' and '-' only",
            ));
        }
        let phc = PasswordHash::new(hash).map_err(|_| bad("not an argon2 hash"))?;
        if !phc.algorithm.as_str().starts_with("argon2") {
            return Err(bad("not an argon2 hash"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad(&format!("{name} is there twice")));
        }
        out.push((name.to_string(), hash.to_string()));
    }
    Ok(out)
}

/// An argon2id hash (PHC string) of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `name` is an admin with this password. An unknown name costs
/// the same hash computation, so timing tells nothing about who exists.
pub fn admin_matches(admins: &[(String, String)], name: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let known = admins
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, h)| h.as_str());
    let hash = match known {
        Some(h) => h,
        None => DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default()),
    };
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let ok = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &phc)
        .is_ok();
    ok && known.is_some()
}

pub struct Session {
    pub who: Who,
    pub csrf: String,
    pub expires: Instant,
}

/// Live sessions by cookie value.
#[derive(Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
}

impl Sessions {
    pub fn create(&mut self, who: Who, ttl: Duration) -> (String, String) {
        let now = Instant::now();
        self.map.retain(|_, s| s.expires > now);
        let (id, csrf) = (random_token(), random_token());
        self.map.insert(
            id.clone(),
            Session {
                who,
                csrf: csrf.clone(),
                expires: now + ttl,
            },
        );
        (id, csrf)
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.map.get(id).filter(|s| s.expires > Instant::now())
    }

    pub fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }
}

/// Failed logins after which a client address or a box is locked.
pub const LOCK_AFTER: u32 = 5;
/// How long a lock lasts.
pub const LOCK_FOR: Duration = Duration::from_secs(300);
/// Failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(900);

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed logins per client address and per box name typed (existing or
/// not, so the answer tells nothing about which boxes exist).
#[derive(Default)]
pub struct Throttle {
    by_addr: HashMap<IpAddr, Failures>,
    by_box: HashMap<String, Failures>,
}

impl Throttle {
    fn locked(f: Option<&Failures>, now: Instant) -> Option<Duration> {
        let f = f?;
        if f.count >= LOCK_AFTER {
            let until = f.last + LOCK_FOR;
            return (until > now).then(|| until - now);
        }
        None
    }

    /// `Some(wait)` while the address or the box is locked.
    pub fn locked_for(&mut self, addr: IpAddr, mailbox: &str) -> Option<Duration> {
        let now = Instant::now();
        self.by_addr
            .retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        self.by_box
            .retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        let a = Self::locked(self.by_addr.get(&addr), now);
        let b = Self::locked(self.by_box.get(mailbox), now);
        a.max(b)
    }

    /// Records a failure; returns how long to wait before answering (grows
    /// with the failures, so guessing is slow even before the lock).
    pub fn failed(&mut self, addr: IpAddr, mailbox: &str) -> Duration {
        let now = Instant::now();
        let bump = |f: &mut Failures| {
            f.count += 1;
            f.last = now;
            f.count
        };
        let fresh = Failures {
            count: 0,
            last: now,
        };
        let a = bump(self.by_addr.entry(addr).or_insert(fresh));
        let b = bump(self.by_box.entry(mailbox.to_string()).or_insert(fresh));
        Duration::from_millis(200 * u64::from(a.max(b).min(10)))
    }

    pub fn succeeded(&mut self, addr: IpAddr, mailbox: &str) {
        self.by_addr.remove(&addr);
        self.by_box.remove(mailbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_compare_whole() {
        assert!(pin_matches("1111", Some("1111")));
        assert!(!pin_matches("111", Some("1111")));
        assert!(!pin_matches("11111", Some("1111")));
        assert!(!pin_matches("", None));
        assert!(!pin_matches("\u{0}no pin", None));
    }

    #[test]
    fn admin_passwords_are_argon2_and_checked_whole() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
        let admins = vec![("alice".to_string(), h)];
        assert!(admin_matches(&admins, "alice", "correct horse"));
        assert!(!admin_matches(&admins, "alice", "correct hors"));
        assert!(!admin_matches(&admins, "bob", "correct horse"));
        assert!(valid_admin_name("ops.team-1"));
        assert!(!valid_admin_name("2101@finance"));
        assert!(!valid_admin_name(""));
    }

    #[test]
    fn admins_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admins");
        let h = hash_password("x").unwrap();
        std::fs::write(&p, format!("# admins\n\nalice:{h}\n")).unwrap();
        assert_eq!(load_admins(&p).unwrap().len(), 1);
        std::fs::write(&p, format!("alice:{h}\nbob:1111\n")).unwrap();
        let e = load_admins(&p).unwrap_err();
        assert!(e.contains("line 2") && e.contains("argon2"), "{e}");
        std::fs::write(&p, format!("alice:{h}\nalice:{h}\n")).unwrap();
        assert!(load_admins(&p).unwrap_err().contains("twice"));
        std::fs::write(&p, format!("a@b:{h}\n")).unwrap();
        assert!(load_admins(&p).unwrap_err().contains("line 1"));
    }

    #[test]
    fn throttle_locks_after_repeated_failures() {
        let mut t = Throttle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut waits = Vec::new();
        for _ in 0..LOCK_AFTER {
            assert!(t.locked_for(ip, "2101@finance").is_none());
            waits.push(t.failed(ip, "2101@finance"));
        }
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "{waits:?}");
        assert!(t.locked_for(ip, "2101@finance").is_some());
        // Another address trying the same box is locked out too.
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        assert!(t.locked_for(other, "2101@finance").is_some());
        assert!(t.locked_for(other, "2102@finance").is_none());
    }
}

//! Who may use the web interface: box owners' PINs as Asterisk accepts them,
//! sessions (random cookie, CSRF token, expiry) and login throttling.

use crate::config::{MailboxConf, VoicemailConf};
use crate::spool::{Context, MailboxId, Spool};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
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

pub struct Session {
    pub mailbox: MailboxId,
    pub csrf: String,
    pub expires: Instant,
}

/// Live sessions by cookie value.
#[derive(Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
}

impl Sessions {
    pub fn create(&mut self, mailbox: MailboxId, ttl: Duration) -> (String, String) {
        let now = Instant::now();
        self.map.retain(|_, s| s.expires > now);
        let (id, csrf) = (random_token(), random_token());
        self.map.insert(
            id.clone(),
            Session {
                mailbox,
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

//! vmtool: read and manage Asterisk `app_voicemail` spools exactly the way Asterisk does.
//!
//! The library never prints and never exits; the `vmtool` binary is a thin layer on top.
//!
//! ```no_run
//! use vmtool::spool::Spool;
//! use vmtool::store::{FileStore, MailboxStore};
//!
//! let spool = Spool::new("/var/spool/asterisk/voicemail");
//! let store = FileStore::new(spool);
//! for ctx in store.contexts().unwrap() {
//!     for mbox in store.mailboxes(&ctx).unwrap() {
//!         let c = store.count(&mbox).unwrap();
//!         println!("{mbox}: {} new, {} old", c.new_total(), c.old);
//!     }
//! }
//! ```

pub mod age;
pub mod ami;
pub mod archive;
pub mod audio;
pub mod callerid;
pub mod cmd;
pub mod conf;
pub mod config;
pub mod deposit;
pub mod dialect;
pub mod error;
pub mod fsutil;
pub mod listing;
pub mod lock;
pub mod metadata;
pub mod ops;
pub mod render;
pub mod report;
pub mod scan;
pub mod spool;
pub mod store;
pub mod target;
pub mod watch;

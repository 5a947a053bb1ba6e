//! Library example: walk a spool through the mailbox store and print each
//! mailbox's MailboxCount numbers and its messages.
//!
//! `cargo run --example list_spool -- examples/spool`

use vmtool::spool::Spool;
use vmtool::store::{FileStore, MailboxStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/var/spool/asterisk".into());
    let store = FileStore::new(Spool::from_dir(dir.as_ref()));
    for ctx in store.contexts()? {
        for mb in store.mailboxes(&ctx)? {
            let c = store.count(&mb)?;
            println!(
                "{mb}: {} new ({} urgent), {} old",
                c.new_total(),
                c.urgent,
                c.old
            );
            for folder in store.folders(&mb)? {
                for files in store.scan_folder(&mb, &folder)?.messages {
                    let caller = match store.read_metadata(&mb, &folder, files.num) {
                        Ok(m) => m.callerid_raw().unwrap_or("?").to_string(),
                        Err(e) => format!("unreadable: {e}"),
                    };
                    println!(
                        "  {folder}/{} {:?} {caller}",
                        files.num.stem(),
                        files.state()
                    );
                }
            }
        }
    }
    Ok(())
}

//! `vmtool count`: AMI MailboxCount numbers for scripts.

use super::prelude::*;

#[derive(Debug, Args)]
pub struct CountArgs {
    /// box@context (or a box name found in one context)
    #[arg(value_name = "BOX", required = true)]
    pub boxes: Vec<String>,
}

pub fn exec(setup: &Setup, a: &CountArgs, out: &mut dyn Write, rep: &mut Reporter) -> Result<Exit> {
    let mut ok = 0usize;
    for t in setup.resolve_all(&a.boxes, rep) {
        let Target::Mailbox(mb) = &t else {
            rep.error(&Error::Usage(format!(
                "count takes a mailbox (box@context), not {}",
                target::describe(&t)
            )));
            continue;
        };
        let c = match setup.store.count(mb) {
            Ok(c) => c,
            Err(e) => {
                rep.error(&e);
                continue;
            }
        };
        let line = match setup.format {
            Format::Json => serde_json::json!({"mailbox": mb.to_string(), "urgent": c.urgent, "new": c.new, "old": c.old}).to_string(),
            Format::Csv => {
                if ok == 0 {
                    writeln!(out, "mailbox,urgent,new,old").map_err(out_err)?;
                }
                format!("{},{},{},{}", render::csv_text(&mb.to_string()), c.urgent, c.new, c.old)
            }
            Format::Table => format!("{} urgent={} new={} old={}", sanitize(&mb.to_string()), c.urgent, c.new, c.old),
        };
        writeln!(out, "{line}").map_err(out_err)?;
        ok += 1;
    }
    Ok(rep.finish(ok))
}

//! Integration tests: the built `vmtool` binary on temp copies of real spools.

mod ami;
mod ami_server;
mod browser;
mod util;

mod add_format;
mod archive;
mod change;
mod check;
mod contention;
mod deposit;
mod docs;
mod example;
mod export;
mod fixture;
mod fuzz_replay;
mod greeting;
mod hostile;
mod model;
mod play;
mod readonly;
mod report;
mod scenarios;
mod serve;
mod soak;
mod sql;
mod sql_race;
mod surface;
mod synthetic;
mod watch;

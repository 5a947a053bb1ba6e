//! Integration tests: the built `vmtool` binary on temp copies of real spools.

mod util;
// mod ami_server;

mod change;
mod check;
mod docs;
mod example;
mod fixture;
mod readonly;
mod synthetic;

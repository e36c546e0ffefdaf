//! `granary serve`: the server.

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {}

pub fn run(_: ServeArgs) -> Result<()> {
    bail!("not implemented yet")
}

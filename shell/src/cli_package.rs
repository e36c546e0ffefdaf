//! `granary keygen|init|pack|verify|unpack`: the app developer's tools.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenArgs {}
#[derive(Args)]
pub struct InitArgs {}
#[derive(Args)]
pub struct PackArgs {
    dir: Option<PathBuf>,
}
#[derive(Args)]
pub struct VerifyArgs {
    package: PathBuf,
}
#[derive(Args)]
pub struct UnpackArgs {
    package: PathBuf,
    dir: PathBuf,
}

pub fn keygen(_: KeygenArgs) -> Result<()> {
    bail!("not implemented yet")
}
pub fn init(_: InitArgs) -> Result<()> {
    bail!("not implemented yet")
}
pub fn pack(_: PackArgs) -> Result<()> {
    bail!("not implemented yet")
}
pub fn verify(_: VerifyArgs) -> Result<()> {
    bail!("not implemented yet")
}
pub fn unpack(_: UnpackArgs) -> Result<()> {
    bail!("not implemented yet")
}

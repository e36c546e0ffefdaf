//! `granary admin-token`: asks the running server for a one-time admin setup link.

use crate::control;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct AdminTokenArgs {
    /// The running server's data directory [default: as `granary serve`].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn admin_token(args: AdminTokenArgs) -> Result<()> {
    let data = args.data_dir.unwrap_or_else(crate::server::default_data_dir);
    let (url, seconds) = control::with_control(&data, async |client| {
        let reply = client.new_admin_token_request().send().promise.await?;
        let r = reply.get()?;
        Ok((r.get_url()?.to_string()?, r.get_valid_seconds()))
    })?;
    eprintln!("Open this link within {} minutes to create an administrator account:", seconds / 60);
    println!("{url}");
    Ok(())
}

#[derive(Args)]
pub struct StatusArgs {
    /// The running server's data directory [default: as `granary serve`].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `granary status`: what the running server is (asks it over the control socket).
pub fn status(args: StatusArgs) -> Result<()> {
    let data = args.data_dir.unwrap_or_else(crate::server::default_data_dir);
    let (version, users, admins, base_url) = control::with_control(&data, async |client| {
        let reply = client.status_request().send().promise.await?;
        let r = reply.get()?;
        Ok((r.get_version()?.to_string()?, r.get_users(), r.get_admins(), r.get_base_url()?.to_string()?))
    })?;
    if args.json {
        let v = serde_json::json!({ "version": version, "users": users, "admins": admins, "base_url": base_url });
        println!("{v}");
    } else {
        println!("Granary {version} at {base_url}: {users} accounts ({admins} administrators)");
    }
    Ok(())
}

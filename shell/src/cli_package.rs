//! `granary keygen|init|pack|verify|unpack`: the app developer's tools.

use anyhow::{bail, Context, Result};
use clap::Args;
use granary_grains::package::{self, Limits, VerifiedPackage};
use granary_grains::{keyring, source};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct KeyringArg {
    /// The keyring file [default: $GRANARY_KEYRING, else ~/.config/granary/keyring].
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
}

impl KeyringArg {
    fn path(&self) -> Result<PathBuf> {
        match &self.keyring {
            Some(p) => Ok(p.clone()),
            None => Ok(keyring::default_path()?),
        }
    }
}

#[derive(Args)]
pub struct KeygenArgs {
    #[command(flatten)]
    keyring: KeyringArg,
}

#[derive(Args)]
pub struct InitArgs {
    /// Directory to write granary.toml into.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The app's title.
    #[arg(long, default_value = "My App")]
    title: String,
    #[command(flatten)]
    keyring: KeyringArg,
}

#[derive(Args)]
pub struct PackArgs {
    /// Directory holding granary.toml.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the package.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = package::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    #[command(flatten)]
    keyring: KeyringArg,
}

#[derive(Args)]
pub struct LimitArgs {
    /// Largest uncompressed size accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_archive_bytes)]
    max_size: u64,
    /// Most files, symlinks and directories accepted.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_files)]
    max_files: u64,
    /// Deepest directory nesting accepted.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_depth)]
    max_depth: u32,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits { max_archive_bytes: self.max_size, max_files: self.max_files, max_depth: self.max_depth }
    }
}

#[derive(Args)]
pub struct VerifyArgs {
    package: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
pub struct UnpackArgs {
    package: PathBuf,
    /// A directory that does not exist yet (or is empty).
    dir: PathBuf,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let path = args.keyring.path()?;
    let key = keyring::generate(&path)?;
    eprintln!("Added a new app key to {}. Keep this file secret and backed up:", path.display());
    eprintln!("whoever has the key can publish updates of the app, and a lost key cannot be replaced.");
    println!("{}", key.app_id());
    Ok(())
}

pub fn init(args: InitArgs) -> Result<()> {
    let file = args.dir.join("granary.toml");
    if file.exists() {
        bail!("{} already exists; edit it, or run `granary init` in another directory", file.display());
    }
    if !args.dir.is_dir() {
        bail!("{} is not a directory; create it first", args.dir.display());
    }
    let path = args.keyring.path()?;
    let key = keyring::generate(&path)?;
    let text = source::init_template(&key.app_id().to_string(), &args.title);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .with_context(|| format!("writing {}", file.display()))?;
    eprintln!("Wrote {} for app id {}", file.display(), key.app_id());
    eprintln!("Its signing key is in {}. Next: put your app in build/ and run `granary pack -o app.gpk`.", path.display());
    Ok(())
}

pub fn pack(args: PackArgs) -> Result<()> {
    let toml = args.dir.join("granary.toml");
    let src = source::load(&toml)?;
    for s in &src.skipped {
        eprintln!("warning: left out {}: {}", s.path, s.reason);
    }
    let app_id = src.manifest.app_id().with_context(|| format!("in {}", toml.display()))?;
    let key = keyring::find(&args.keyring.path()?, &app_id)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("a valid progress template")
                .progress_chars("=> "),
        );
        bar.set_message("compressing");
        bar
    });
    let mut progress = |done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let info = package::pack(&src.manifest, &src.tree, &key, &args.output, args.level, &mut progress)
        .with_context(|| format!("packing {}", toml.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!(
        "Packed {} ({} version {}): {} entries, {} → {}",
        args.output.display(),
        src.manifest.app_title,
        src.manifest.app_version,
        info.file_count,
        human(info.archive_bytes),
        human(info.package_bytes),
    );
    println!("{}", info.package_id);
    Ok(())
}

fn read_checked(path: &Path, limits: &LimitArgs) -> Result<VerifiedPackage> {
    package::read_file(path, &limits.limits()).with_context(|| format!("{} is not a valid package", path.display()))
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    let pkg = read_checked(&args.package, &args.limits)?;
    let m = &pkg.manifest;
    if args.json {
        let v = serde_json::json!({
            "valid": true,
            "app_id": pkg.app_id.to_string(),
            "package_id": pkg.package_id.to_string(),
            "title": m.app_title,
            "app_version": m.app_version,
            "marketing_version": m.app_marketing_version,
            "min_upgradable_version": m.min_upgradable_app_version,
            "package_bytes": pkg.package_bytes,
            "unpacked_bytes": pkg.archive_bytes,
            "content_bytes": pkg.content_bytes,
            "file_count": pkg.file_count,
            "manifest": m,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: valid, signed by its app's key", args.package.display());
        println!("  title        {}", m.app_title);
        println!("  app id       {}", pkg.app_id);
        println!("  package id   {}", pkg.package_id);
        println!("  version      {} ({}), upgrades grains from version {}", m.app_version, display_or(&m.app_marketing_version, "no marketing version"), m.min_upgradable_app_version);
        println!("  size         {} ({} unpacked)", human(pkg.package_bytes), human(pkg.archive_bytes));
        println!("  entries      {}", pkg.file_count);
    }
    Ok(())
}

pub fn unpack(args: UnpackArgs) -> Result<()> {
    let pkg = read_checked(&args.package, &args.limits)?;
    package::unpack(&pkg, &args.dir).with_context(|| format!("unpacking {}", args.package.display()))?;
    eprintln!("Unpacked {} ({} entries) into {}", pkg.manifest.app_title, pkg.file_count, args.dir.display());
    Ok(())
}

fn display_or<'a>(s: &'a str, empty: &'a str) -> &'a str {
    if s.is_empty() {
        empty
    } else {
        s
    }
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

//! Server settings an administrator changes on `/admin/settings`, kept in the store: the
//! server's title, development accounts, default grain limits (live), and the base URL and
//! wildcard host (used from the next start), and the powerbox drivers' outgoing mail relay,
//! mail domain and the hosts on private addresses the HTTP driver may reach (all live).
//! Command-line flags given at start win.

use crate::apps::GrainLimits;
use granary_powerbox::drivers::mail_send::{RelayLogin, RelaySecurity, SmtpRelay};
use crate::server::{Server, SETTINGS};
use granary_store::Db;
use std::sync::atomic::Ordering;

/// Settings the command line fixed for this run.
pub struct Overrides {
    pub dev_accounts: bool,
    pub limits: bool,
}

/// The settings as stored (absent keys: the defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub title: String,
    pub dev_accounts: bool,
    pub limits: Option<GrainLimits>,
    pub base_url: String,
    pub wildcard_host: String,
    /// `host:port` of the SMTP relay the send-mail driver uses ("" = no outgoing mail).
    pub smtp_relay: String,
    /// How the connection to the relay is protected: `none`, `starttls` or `tls`.
    pub smtp_security: RelaySecurity,
    /// The relay login ("" = none); the password is never shown again once saved.
    pub smtp_username: String,
    pub smtp_password: String,
    /// The domain of grain mail addresses (`<grain id>@<domain>`; "" = the base URL's host).
    pub mail_domain: String,
    /// Host names the HTTP driver may reach although they resolve to private, loopback or
    /// link-local addresses.
    pub http_allowlist: Vec<String>,
}

fn get(db: &Db, key: &str) -> Result<Option<String>, granary_store::Error> {
    db.get(&SETTINGS, key)
}

pub fn load(db: &Db) -> Result<Settings, granary_store::Error> {
    let limits = get(db, "grain_limits")?.and_then(|v| serde_json::from_str(&v).ok());
    Ok(Settings {
        title: get(db, "title")?.unwrap_or_default(),
        dev_accounts: get(db, "dev_accounts")?.as_deref() == Some("true"),
        limits,
        base_url: get(db, "base_url")?.unwrap_or_default(),
        wildcard_host: get(db, "wildcard_host")?.unwrap_or_default(),
        smtp_relay: get(db, "smtp_relay")?.unwrap_or_default(),
        smtp_security: get(db, "smtp_security")?.and_then(|v| RelaySecurity::parse(&v)).unwrap_or_default(),
        smtp_username: get(db, "smtp_username")?.unwrap_or_default(),
        smtp_password: get(db, "smtp_password")?.unwrap_or_default(),
        mail_domain: get(db, "mail_domain")?.unwrap_or_default(),
        http_allowlist: get(db, "http_allowlist")?.map(|v| split_hosts(&v)).unwrap_or_default(),
    })
}

/// Host names from a comma- or space-separated list, lowercased.
pub fn split_hosts(v: &str) -> Vec<String> {
    v.split([',', ' ', '\n', '\r', '\t']).map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect()
}

impl Settings {
    /// The outgoing mail relay, if one is set, trusting `extra_roots` besides the webpki roots.
    pub fn relay(&self, extra_roots: Vec<Vec<u8>>) -> Option<SmtpRelay> {
        let (host, port) = self.smtp_relay.rsplit_once(':')?;
        let login = (!self.smtp_username.is_empty())
            .then(|| RelayLogin { username: self.smtp_username.clone(), password: self.smtp_password.clone() });
        Some(SmtpRelay { host: host.to_owned(), port: port.parse().ok()?, security: self.smtp_security, login, extra_roots })
    }
}

/// `host:port` with a port, or a message saying what to enter.
fn check_relay(v: &str) -> Result<(), String> {
    match v.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(['/', ' ', '@']) && p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(()),
        _ => Err(format!("the SMTP relay `{v}` must be host:port, e.g. mail.example.org:25")),
    }
}

/// The stored base URL and wildcard host, for the start of `granary serve` (flags win).
pub fn stored_addresses(db: &Db) -> Result<(Option<String>, Option<String>), granary_store::Error> {
    let s = load(db)?;
    Ok(((!s.base_url.is_empty()).then_some(s.base_url), (!s.wildcard_host.is_empty()).then_some(s.wildcard_host)))
}

/// Applies the stored live settings at start, unless a flag fixed them.
pub fn apply_stored(server: &Server, o: &Overrides) -> anyhow::Result<()> {
    let s = load(&server.db)?;
    if s.dev_accounts && !o.dev_accounts {
        crate::ui::DEV_ACCOUNTS.store(true, Ordering::Relaxed);
        eprintln!("warning: development accounts are on (server settings): anyone can sign in as a test user.");
    }
    if let (Some(l), false) = (s.limits, o.limits) {
        server.runner.default_limits.set(l);
    }
    crate::ui::set_title(&s.title);
    Ok(())
}

/// Checks and saves the settings form; applies what is live. `Err` is shown to the admin.
pub fn save(server: &Server, form: &std::collections::HashMap<String, String>) -> Result<(), String> {
    let f = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let title = f("title");
    if title.chars().count() > 60 {
        return Err("the title may be at most 60 characters".into());
    }
    let limits = GrainLimits::checked(
        f("memory_mib").parse().map_err(|_| "enter a whole number of MiB for memory".to_owned())?,
        f("tasks").parse().map_err(|_| "enter a whole number of processes and threads".to_owned())?,
    )?;
    let base_url = f("base_url");
    if !base_url.is_empty() {
        crate::server::BaseUrl::parse(&base_url).map_err(|e| e.to_string())?;
    }
    let wildcard = f("wildcard_host");
    if !wildcard.is_empty() {
        crate::gateway::WildcardHost::parse(&wildcard, base_url.starts_with("https://")).map_err(|e| e.to_string())?;
    }
    let smtp_relay = f("smtp_relay");
    if !smtp_relay.is_empty() {
        check_relay(&smtp_relay)?;
    }
    let security = RelaySecurity::parse(&f("smtp_security")).ok_or("choose none, STARTTLS or TLS for the relay connection")?;
    let username = f("smtp_username");
    // An empty password field keeps the saved one (it is never sent back to the page).
    let password = match form.get("smtp_password").map(String::as_str) {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ if username.is_empty() => String::new(),
        _ => load(&server.db).map_err(|e| e.to_string())?.smtp_password,
    };
    if !username.is_empty() {
        if password.is_empty() {
            return Err("enter the relay password for the user name (or clear the user name)".into());
        }
        let probe = SmtpRelay { security, ..SmtpRelay::plain(smtp_relay.rsplit_once(':').map_or("", |(h, _)| h), 0) };
        if !probe.may_log_in() {
            return Err("a relay login needs STARTTLS or TLS (unless the relay is on this machine): the password would cross the network in clear".into());
        }
    }
    let mail_domain = f("mail_domain").to_ascii_lowercase();
    if !mail_domain.is_empty() && !mail_domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err(format!("the mail domain `{mail_domain}` may contain only letters, digits, dots and dashes"));
    }
    let allowlist = split_hosts(&f("http_allowlist"));
    if let Some(bad) = allowlist.iter().find(|h| h.len() > 253 || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')) {
        return Err(format!("`{bad}` is not a host name; list host names only, without scheme or port"));
    }
    let dev = form.get("dev_accounts").is_some_and(|v| v == "on");
    let limits_json = serde_json::to_string(&limits).map_err(|e| e.to_string())?;
    server
        .db
        .transaction(|tx| {
            tx.insert(&SETTINGS, "title", &title)?;
            tx.insert(&SETTINGS, "dev_accounts", &dev.to_string())?;
            tx.insert(&SETTINGS, "grain_limits", &limits_json)?;
            tx.insert(&SETTINGS, "base_url", &base_url)?;
            tx.insert(&SETTINGS, "wildcard_host", &wildcard)?;
            tx.insert(&SETTINGS, "smtp_relay", &smtp_relay)?;
            tx.insert(&SETTINGS, "smtp_security", &security.as_str().to_owned())?;
            tx.insert(&SETTINGS, "smtp_username", &username)?;
            tx.insert(&SETTINGS, "smtp_password", &password)?;
            tx.insert(&SETTINGS, "mail_domain", &mail_domain)?;
            tx.insert(&SETTINGS, "http_allowlist", &allowlist.join(" "))
        })
        .map_err(|e| e.to_string())?;
    crate::ui::DEV_ACCOUNTS.store(dev, Ordering::Relaxed);
    server.runner.default_limits.set(limits);
    server.powerbox.sync_allowlist(&allowlist);
    crate::ui::set_title(&title);
    Ok(())
}

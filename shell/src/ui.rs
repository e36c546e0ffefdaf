//! The shell's server-rendered pages (maud escapes every interpolated value).

use crate::accounts::User;
use maud::{html, Markup, DOCTYPE};

pub const CSS: &str = include_str!("../static/granary.css");

/// Set once at start by `granary serve --dev-accounts`: every page then shows a warning banner.
pub static DEV_ACCOUNTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The test users `--dev-accounts` offers on the sign-in page (username, display name).
pub const DEV_USERS: [(&str, &str); 3] = [("alice", "Alice Dev"), ("bob", "Bob Dev"), ("carol", "Carol Dev")];

thread_local! {
    /// The server's title from its settings ("" = "Granary"); the server runs on one thread.
    static TITLE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

pub fn set_title(t: &str) {
    TITLE.with(|x| *x.borrow_mut() = t.to_owned());
}

fn site_title() -> String {
    TITLE.with(|x| x.borrow().clone())
}

fn dev_accounts() -> bool {
    DEV_ACCOUNTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Who is looking at a page, for the header.
pub struct Viewer<'a> {
    pub user: &'a User,
    pub csrf: &'a str,
}

pub fn page(title: &str, viewer: Option<&Viewer<'_>>, active: &str, narrow: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " @if site_title().is_empty() { "Granary" } @else { (site_title()) } }
                link rel="stylesheet" href="/static/granary.css";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
            }
            body {
                @if dev_accounts() {
                    div.devbanner role="alert" { "Development accounts are on: anyone can sign in as a test user. Never use this server for real data." }
                }
                header.top {
                    a.brand href="/" { "Gran" span { "ary" } }
                    @if !site_title().is_empty() { span.sitetitle { (site_title()) } }
                    nav {
                        @if let Some(v) = viewer {
                            a.active[active == "home"] href="/" { "Grains" }
                            a.active[active == "apps"] href="/apps" { "Apps" }
                            @if v.user.admin {
                                a.active[active == "admin"] href="/admin" { "Admin" }
                            }
                        }
                    }
                    @if let Some(v) = viewer {
                        div.who {
                            a href="/account" { (v.user.display_name) }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main.narrow[narrow] { (body) }
            }
        }
    }
}

pub fn not_set_up() -> Markup {
    page("Welcome", None, "", true, html! {
        div.card {
            h1 { "Welcome to Granary" }
            p { "This server has no administrator yet." }
            p { "On the machine that runs it, run" }
            p { code { "granary admin-token" } }
            p { "and open the link it prints to create the first administrator account." }
        }
    })
}

pub fn login(csrf: &str, error: Option<&str>, username: &str) -> Markup {
    page("Sign in", None, "", true, html! {
        div.card {
            h1 { "Sign in" }
            form.stack method="post" action="/login" {
                @if let Some(e) = error { div.error role="alert" { (e) } }
                input type="hidden" name="csrf" value=(csrf);
                label { "Username" input type="text" name="username" value=(username) autocomplete="username" required autofocus; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        }
        @if dev_accounts() {
            div.card #dev-login {
                h2 { "Development accounts" }
                p.muted { "Sign in as a test user without a password (created on first use)." }
                @for (name, display) in DEV_USERS {
                    form method="post" action="/dev-login" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="username" value=(name);
                        button.secondary type="submit" { "Sign in as " (display) }
                    }
                }
            }
        }
    })
}

/// What a new-account form is for: its page title, lead text and where it posts.
pub struct NewAccount<'a> {
    pub title: &'a str,
    pub lead: &'a str,
    pub action: String,
}

/// The form that creates an account (admin setup, invitations); fields keep what was typed.
pub fn new_account(f: &NewAccount<'_>, csrf: &str, error: Option<&str>, username: &str, display_name: &str) -> Markup {
    page(f.title, None, "", true, html! {
        div.card {
            h1 { (f.title) }
            p.muted { (f.lead) }
            form.stack method="post" action=(f.action) {
                @if let Some(e) = error { div.error role="alert" { (e) } }
                input type="hidden" name="csrf" value=(csrf);
                label { "Username" input type="text" name="username" value=(username) autocomplete="username" required autofocus; }
                label { "Your name" input type="text" name="display_name" value=(display_name) autocomplete="name" required; }
                label { "Password (at least 10 characters)" input type="password" name="password" autocomplete="new-password" required minlength="10"; }
                label { "Password again" input type="password" name="password2" autocomplete="new-password" required minlength="10"; }
                button type="submit" { "Create account and sign in" }
            }
        }
    })
}

pub fn setup(token: &str, csrf: &str, error: Option<&str>, username: &str, display_name: &str) -> Markup {
    let f = NewAccount {
        title: "Create an administrator",
        lead: "This account can install apps, invite people and change server settings.",
        action: format!("/setup/{token}"),
    };
    new_account(&f, csrf, error, username, display_name)
}

pub fn settings(v: &Viewer<'_>, s: &crate::settings::Settings, defaults: crate::apps::GrainLimits, problem: Option<&str>, saved: bool) -> Markup {
    let limits = s.limits.unwrap_or(defaults);
    page("Server settings", Some(v), "admin", false, html! {
        h1 { "Server settings" }
        @if let Some(e) = problem { div.error role="alert" { (e) } }
        @if saved { div.notice role="status" { "Saved." } }
        div.card {
            form.stack #settings method="post" action="/admin/settings" {
                input type="hidden" name="csrf" value=(v.csrf);
                label { "Server title (shown in the header; empty = none)" input type="text" name="title" value=(s.title) maxlength="60"; }
                label { "Default memory per grain (MiB)" input type="text" name="memory_mib" inputmode="numeric" value=(limits.memory_mib); }
                label { "Default processes and threads per grain" input type="text" name="tasks" inputmode="numeric" value=(limits.tasks); }
                label.check { input type="checkbox" name="dev_accounts" checked[s.dev_accounts]; " Development accounts (anyone can sign in as a test user — never on a real server)" }
                label { "Base URL (from the next start; empty = the command line's or the default)" input type="text" name="base_url" value=(s.base_url) placeholder="https://granary.example.org"; }
                label { "Wildcard host for grains (from the next start; empty = derived from the base URL)" input type="text" name="wildcard_host" value=(s.wildcard_host) placeholder="*.granary.example.org"; }
                label { "Outgoing mail relay for “send mail as” grants (host:port; empty = grains cannot send mail)" input type="text" name="smtp_relay" value=(s.smtp_relay) placeholder="smtp.example.org:587"; }
                label { "Relay connection"
                    select name="smtp_security" {
                        @for (value, text) in [("none", "Unencrypted (a relay on this machine or a trusted network)"), ("starttls", "STARTTLS (usually port 587)"), ("tls", "TLS (usually port 465)")] {
                            option value=(value) selected[s.smtp_security.as_str() == value] { (text) }
                        }
                    }
                }
                label { "Relay user name (empty = the relay needs no login)" input type="text" name="smtp_username" value=(s.smtp_username) autocomplete="off"; }
                label { "Relay password" (if s.smtp_password.is_empty() { "" } else { " (saved; leave empty to keep it)" })
                    input type="password" name="smtp_password" value="" autocomplete="new-password"; }
                label { "Mail domain of grain addresses (empty = the base URL's host)" input type="text" name="mail_domain" value=(s.mail_domain) placeholder="granary.example.org"; }
                label { "Hosts on private addresses that grains may be granted HTTP access to (space-separated; normally empty)" input type="text" name="http_allowlist" value=(s.http_allowlist.join(" ")) placeholder="intranet.example.lan"; }
                button type="submit" { "Save settings" }
            }
        }
    })
}

pub fn invite(token: &str, csrf: &str, error: Option<&str>, username: &str, display_name: &str) -> Markup {
    let f = NewAccount { title: "Create your account", lead: "You were invited to this Granary server.", action: format!("/invite/{token}") };
    new_account(&f, csrf, error, username, display_name)
}

pub fn account(v: &Viewer<'_>, tokens: &[crate::tokens::ApiToken], new_token: Option<&str>, base: &str, email_notice: Option<&str>) -> Markup {
    page("Account", Some(v), "", false, html! {
        h1 { "Your account" }
        div.card {
            p { "Signed in as " strong { (v.user.display_name) } " (" code { (v.user.username) } ")" @if v.user.admin { ", administrator" } "." }
            p { a #reach-mine-link href="/reach" { "What you have granted your grains" } " — web APIs, mail, other grains — with a Revoke button for each." }
        }
        div.card #email {
            h2 { "Mail address" }
            @if let Some(n) = email_notice { p.notice role="status" { (n) } }
            @match &v.user.email {
                Some(e) => p { "Your verified address is " strong #email-verified { (e) } ". You can let a grain send mail as it." },
                None => p.muted { "No verified address. Add one to let grains send mail as you; the server mails you a link to confirm it." },
            }
            form.stack method="post" action="/account/email" {
                input type="hidden" name="csrf" value=(v.csrf);
                label { "Address (empty removes it)" input type="email" name="email" value=(v.user.email.as_deref().unwrap_or("")) placeholder="you@example.org"; }
                button.secondary type="submit" { "Send a confirmation link" }
            }
        }
        div.card #tokens {
            h2 { "Personal access tokens" }
            p.muted { "A token lets a program use the JSON API as you: " code { "curl -H 'Authorization: Bearer gt_…' " (base) "/api/v1/grains" } ". Revoke one you no longer use." }
            @if let Some(t) = new_token {
                div.notice {
                    p { "Your new token. Copy it now: it is shown only once." }
                    input #new-token type="text" readonly value=(t) aria-label="New token";
                }
            }
            form.share method="post" action="/account/tokens" {
                input type="hidden" name="csrf" value=(v.csrf);
                label { "What is it for?" input type="text" name="label" maxlength="100" placeholder="e.g. backup script"; }
                button type="submit" { "Create token" }
            }
            @if tokens.is_empty() { p.muted { "No tokens." } } @else {
                table {
                    tbody {
                        @for t in tokens {
                            tr data-token=(t.id) {
                                td { @if t.label.is_empty() { span.muted { "(no label)" } } @else { (t.label) } }
                                td.muted { code { (t.id) } }
                                td {
                                    form method="post" action={ "/account/tokens/" (t.id) "/revoke" } {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

pub fn setup_expired() -> Markup {
    page("Link expired", None, "", true, html! {
        div.card {
            h1 { "This setup link does not work" }
            p { "It was already used, or it expired (links are valid for one hour)." }
            p { "Run " code { "granary admin-token" } " on the server for a new one." }
        }
    })
}

pub struct AdminStatus<'a> {
    pub version: &'a str,
    pub base_url: &'a str,
    pub data_dir: &'a str,
    pub users: &'a [User],
    pub running_grains: usize,
    /// Bytes used by every grain's storage.
    pub storage_bytes: u64,
    /// A just-created invitation link, shown once.
    pub invite_url: Option<&'a str>,
}

pub fn admin(viewer: &Viewer<'_>, s: &AdminStatus<'_>) -> Markup {
    page("Admin", Some(viewer), "admin", false, html! {
        h1 { "Server status" }
        div.stats {
            div.card { div.muted { "Version" } div.n { (s.version) } }
            div.card { div.muted { "Accounts" } div.n { (s.users.len()) } }
            div.card { div.muted { "Running grains" } div.n #running-grains { (s.running_grains) } }
            div.card { div.muted { "Grain storage" } div.n #storage { (crate::server::human_bytes(s.storage_bytes)) } }
        }
        div.card {
            p { "Address: " code { (s.base_url) } }
            p { "Data directory: " code { (s.data_dir) } }
            p { a href="/admin/settings" { "Server settings" } }
            p { a href="/reach" { "Every capability granted on this server" } }
        }
        div.card #users {
            h2 { "People" }
            @if let Some(url) = s.invite_url {
                div.notice {
                    p { "Send this invitation link to the person you invite. It works once, for 7 days:" }
                    input #invite-url type="text" readonly value=(url) aria-label="Invitation link";
                }
            }
            form method="post" action="/admin/invite" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button type="submit" { "Create an invitation link" }
            }
            table {
                thead { tr { th { "Name" } th { "Username" } th { "Role" } th { "Status" } th { "" } } }
                tbody {
                    @for u in s.users {
                        tr data-user=(u.username) {
                            td { (u.display_name) }
                            td { (u.username) }
                            td { @if u.admin { "Administrator" } @else { "User" } }
                            td { @if u.suspended { "Suspended" } @else { "Active" } }
                            td {
                                @if u.id != viewer.user.id {
                                    form method="post" action={ "/admin/users/" (u.id) @if u.suspended { "/reinstate" } @else { "/suspend" } } {
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        @if u.suspended { button.secondary type="submit" { "Reinstate" } } @else { button.danger type="submit" { "Suspend" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

pub fn error(title: &str, message: &str) -> Markup {
    page(title, None, "", true, html! {
        div.card {
            h1 { (title) }
            p { (message) }
            p { a href="/" { "Back to Granary" } }
        }
    })
}

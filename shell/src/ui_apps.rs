//! The apps pages: the list with the upload form, and an app's details.

use crate::apps::{GrainLimits, InstalledApp};
use crate::server::human_bytes;
use crate::ui::{page, Viewer};
use maud::{html, Markup};

pub const UPLOAD_JS: &str = include_str!("../static/upload.js");

pub fn list(v: &Viewer<'_>, apps: &[InstalledApp]) -> Markup {
    page("Apps", Some(v), "apps", false, html! {
        h1 { "Apps" }
        @if v.user.admin {
            div.card.upload {
                h2 { "Install an app" }
                p.muted { "Choose a " code { ".gpk" } " package. It is checked (signature, contents) before anything is installed." }
                form #upload data-csrf=(v.csrf) data-max=(crate::server::MAX_UPLOAD_BYTES) {
                    input #gpk type="file" name="package" accept=".gpk" required;
                    button type="submit" { "Upload and install" }
                }
                progress #upload-progress max="100" value="0" hidden {}
                p #upload-status role="status" {}
            }
            script src="/static/upload.js" {}
        }
        @if apps.is_empty() {
            div.card.empty {
                h2 { "No apps installed" }
                @if v.user.admin {
                    p { "Upload an app package above to get started." }
                } @else {
                    p { "Ask an administrator to install apps." }
                }
            }
        } @else {
            div.applist {
                @for a in apps {
                    a.card.app href={ "/apps/" (a.package_id) } {
                        @if !a.manifest.metadata.icon_media_type.is_empty() {
                            img.appicon src={ "/apps/" (a.package_id) "/icon" } alt="" width="40" height="40";
                        }
                        div.title { (a.manifest.app_title) }
                        div.muted { "Version " (version(a)) }
                        @if !a.manifest.metadata.description.is_empty() {
                            div { (a.manifest.metadata.description) }
                        }
                    }
                }
            }
        }
    })
}

fn version(a: &InstalledApp) -> String {
    if a.manifest.app_marketing_version.is_empty() {
        a.manifest.app_version.to_string()
    } else {
        format!("{} ({})", a.manifest.app_marketing_version, a.manifest.app_version)
    }
}

pub struct Details<'a> {
    pub app: &'a InstalledApp,
    pub has_icon: bool,
    /// Limits an administrator set for this app, if any.
    pub limits: Option<GrainLimits>,
    pub defaults: GrainLimits,
    pub problem: Option<&'a str>,
}

pub fn details(v: &Viewer<'_>, d: &Details<'_>) -> Markup {
    let (a, has_icon) = (d.app, d.has_icon);
    let m = &a.manifest;
    let effective = d.limits.unwrap_or(d.defaults);
    page(&m.app_title, Some(v), "apps", false, html! {
        div.apphead {
            @if has_icon {
                img.icon src={ "/apps/" (a.package_id) "/icon" } alt="" width="64" height="64";
            }
            div {
                h1 { (m.app_title) }
                div.muted { "Version " (version(a)) }
            }
        }
        // What most visitors of an app's page came for, first; uninstalling last.
        div.card #new-grain {
            h2 { "New grain" }
            @for i in 0..m.actions.len() {
                (crate::ui_grains::new_grain_form(v, a, i))
            }
        }
        div.card {
            @if !m.metadata.description.is_empty() { p { (m.metadata.description) } }
            table.facts {
                tbody {
                    @if !m.metadata.author.is_empty() { tr { th { "Author" } td { (m.metadata.author) } } }
                    @if !m.metadata.license.is_empty() { tr { th { "License" } td { (m.metadata.license) } } }
                    @if !m.metadata.website.is_empty() {
                        tr { th { "Website" } td { a href=(m.metadata.website) rel="noopener noreferrer" { (m.metadata.website) } } }
                    }
                    tr { th { "App id" } td { code { (a.app_id) } } }
                    tr { th { "Package id" } td { code { (a.package_id) } } }
                    tr { th { "Size" } td { (human_bytes(a.package_bytes)) " download, " (human_bytes(a.content_bytes)) " installed, " (a.file_count) " files" } }
                }
            }
        }
        @if !m.permissions.is_empty() || !m.roles.is_empty() {
            div.card {
                h2 { "Sharing roles" }
                @if m.roles.is_empty() { p.muted { "This app defines no roles." } }
                ul {
                    @for r in m.roles.iter().filter(|r| !r.obsolete) {
                        li {
                            strong { (r.title) } @if r.default { " (default)" }
                            @if !r.description.is_empty() { " — " (r.description) }
                        }
                    }
                }
                h2 { "Permissions" }
                ul {
                    @for p in m.permissions.iter().filter(|p| !p.obsolete) {
                        li { strong { (p.title) } @if !p.description.is_empty() { " — " (p.description) } }
                    }
                }
            }
        }
        @if v.user.admin {
            div.card #limits {
                h2 { "Grain limits" }
                @if let Some(e) = d.problem { div.error role="alert" { (e) } }
                p.muted {
                    "Each grain of this app may use " (effective.memory_mib) " MiB of memory and " (effective.tasks) " processes and threads"
                    @if d.limits.is_none() { " (the server's defaults)" } "."
                }
                form.share method="post" action={ "/apps/" (a.package_id) "/limits" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    label { "Memory (MiB)" input type="text" name="memory_mib" inputmode="numeric" value=[d.limits.map(|l| l.memory_mib)] placeholder=(d.defaults.memory_mib); }
                    label { "Processes and threads" input type="text" name="tasks" inputmode="numeric" value=[d.limits.map(|l| l.tasks)] placeholder=(d.defaults.tasks); }
                    button.secondary type="submit" { "Save" }
                }
                p.muted { "Leave both empty to use the server's defaults. Running grains get new limits when they restart." }
            }
        }
        @if v.user.admin {
            div.card #uninstall {
                h2 { "Uninstall" }
                p.muted { "Removes the app from this server. Only possible when no grain uses it." }
                form method="post" action={ "/apps/" (a.package_id) "/uninstall" } data-confirm="Uninstall this app?" {
                    input type="hidden" name="csrf" value=(v.csrf);
                    button.danger type="submit" { "Uninstall " (m.app_title) }
                }
                script src="/static/confirm.js" {}
            }
        }
    })
}

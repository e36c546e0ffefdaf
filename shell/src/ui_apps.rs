//! The apps pages: the list with the upload form, and an app's details.

use crate::apps::InstalledApp;
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

pub fn details(v: &Viewer<'_>, a: &InstalledApp, has_icon: bool) -> Markup {
    let m = &a.manifest;
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
        div.card {
            h2 { "New grain" }
            @for i in 0..m.actions.len() {
                (crate::ui_grains::new_grain_form(v, a, i))
            }
        }
    })
}

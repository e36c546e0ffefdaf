//! Sharing pages: who has access (links, people), the share link landing, and the shared view.

use crate::grains::Grain;
use crate::sharing::ShareLink;
use crate::ui::{page, Viewer};
use granary_grains::manifest::Manifest;
use maud::{html, Markup};
use std::collections::HashMap;

pub struct Person {
    pub name: String,
    pub username: String,
    pub link_id: String,
    /// False once every path to them was revoked.
    pub active: bool,
}

pub struct AccessPage<'a> {
    pub grain: &'a Grain,
    /// (role index, title, may this user hand it out).
    pub roles: &'a [(u32, String, bool)],
    pub links: &'a [ShareLink],
    pub creators: &'a HashMap<String, String>,
    pub people: &'a [Person],
    pub new_link: Option<&'a str>,
    pub problem: Option<&'a str>,
}

fn role_title(m: &Manifest, role: u32) -> String {
    crate::sharing::roles(m).into_iter().find(|(i, ..)| *i == role).map(|(_, t, _)| t).unwrap_or_else(|| "(obsolete role)".into())
}

pub fn access(v: &Viewer<'_>, p: &AccessPage<'_>, m: &Manifest) -> Markup {
    let g = p.grain;
    let csrf = html! { input type="hidden" name="csrf" value=(v.csrf); };
    page(&format!("Share {}", g.title), Some(v), "home", false, html! {
        p { a href={ "/grains/" (g.id) } { "← Back to " (g.title) } }
        h1 { "Share “" (g.title) "”" }
        @if let Some(e) = p.problem { div.error role="alert" { (e) } }
        @if let Some(url) = p.new_link {
            div.card.notice #new-link {
                h2 { "New sharing link" }
                p { "Anyone with this link can open the grain with the role you chose. Copy it now: it is shown only once." }
                input #new-link-url type="text" readonly value=(url) aria-label="Sharing link";
            }
        }
        div.card {
            h2 { "Create a sharing link" }
            form.share method="post" action={ "/grains/" (g.id) "/share" } {
                (csrf)
                label { "Role"
                    select name="role" {
                        @for (i, title, allowed) in p.roles {
                            option value=(i) disabled[!allowed] { (title) @if !allowed { " (more than you have)" } }
                        }
                    }
                }
                label { "Label (who is it for?)" input type="text" name="label" maxlength="100" placeholder="e.g. Book club"; }
                button type="submit" { "Create link" }
            }
        }
        div.card #links {
            h2 { "Links" }
            @if p.links.is_empty() {
                p.muted { "No links yet." }
            } @else {
                table {
                    thead { tr { th { "Label" } th { "Role" } th { "Created by" } th { "" } } }
                    tbody {
                        @for l in p.links {
                            tr.revoked[l.revoked] data-link=(l.id) {
                                td { @if l.label.is_empty() { span.muted { "(no label)" } } @else { (l.label) } }
                                td {
                                    @if l.revoked { (role_title(m, l.role)) } @else {
                                        form.inline method="post" action={ "/grains/" (g.id) "/links/" (l.id) "/role" } {
                                            (csrf)
                                            select name="role" aria-label="Role" {
                                                @for (i, title, allowed) in p.roles {
                                                    option value=(i) selected[*i == l.role] disabled[!allowed] { (title) }
                                                }
                                            }
                                            button.secondary type="submit" { "Change" }
                                        }
                                    }
                                }
                                td.muted { (p.creators.get(&l.created_by).map(String::as_str).unwrap_or("?")) }
                                td {
                                    @if l.revoked { span.muted { "revoked" } } @else {
                                        form method="post" action={ "/grains/" (g.id) "/links/" (l.id) "/revoke" } {
                                            (csrf) button.danger type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !p.people.is_empty() {
            div.card #people {
                h2 { "People with access" }
                table {
                    tbody {
                        @for person in p.people {
                            tr {
                                td { (person.name) " " span.muted { "@" (person.username) } }
                                td.muted {
                                    @if person.active {
                                        "through the link "
                                        @match p.links.iter().find(|l| l.id == person.link_id).map(|l| l.label.as_str()).filter(|l| !l.is_empty()) {
                                            Some(label) => { "“" (label) "”" }
                                            None => { code { (person.link_id) } }
                                        }
                                    } @else { "access revoked" }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A signed-in person opening someone else's link chooses what the grain learns.
pub fn choose(v: &Viewer<'_>, g: &Grain, token: &str) -> Markup {
    let csrf = html! { input type="hidden" name="csrf" value=(v.csrf); };
    page("Open a shared grain", Some(v), "home", true, html! {
        div.card {
            h1 { "Open “" (g.title) "”" }
            p { "Someone shared this grain with you. Should its app know who you are?" }
            form.stack method="post" action={ "/share/" (token) } {
                (csrf)
                button type="submit" name="mode" value="reveal" { "Open as " (v.user.display_name) }
                p.muted { "The app sees your name; the grain is added to your list." }
                button.secondary type="submit" name="mode" value="anonymous" { "Open without revealing who I am" }
                p.muted { "The app sees an anonymous visitor." }
            }
        }
    })
}

/// A grain opened through a link without an identity.
pub fn shared_view(v: Option<&Viewer<'_>>, g: &Grain, frame: &str) -> Markup {
    page(&g.title, v, "home", false, html! {
        div.grainbar {
            h1.grain-title { (g.title) }
            span.muted { "shared with you" @if v.is_some() { " · you are anonymous to this grain" } }
        }
        iframe.grain #grain-frame src=(frame) title=(g.title) {}
    })
}

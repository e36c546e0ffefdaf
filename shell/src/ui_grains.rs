//! The grain pages: the grain list (home) and one grain's page.

use crate::apps::InstalledApp;
use crate::grains::Grain;
use crate::server::human_bytes;
use crate::ui::{page, Viewer};
use maud::{html, Markup};
use std::collections::HashMap;

fn csrf(v: &Viewer<'_>) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

fn app_title<'a>(apps: &'a HashMap<String, InstalledApp>, g: &Grain) -> &'a str {
    apps.get(&g.package_id).map(|a| a.manifest.app_title.as_str()).unwrap_or("(app uninstalled)")
}

/// What the grain list shows about a grain besides its record.
pub struct GrainStatus {
    pub size: Option<u64>,
    pub running: bool,
}

pub fn home(v: &Viewer<'_>, grains: &[Grain], shared: &[Grain], apps: &HashMap<String, InstalledApp>, status: &HashMap<String, GrainStatus>) -> Markup {
    let (live, trash): (Vec<&Grain>, Vec<&Grain>) = grains.iter().partition(|g| g.trashed.is_none());
    page("Grains", Some(v), "home", false, html! {
        h1 { "Your grains" }
        @if live.is_empty() {
            div.card.empty {
                h2 { "No grains yet" }
                p { "A grain is one document, board or notebook of an app, in its own sandbox." }
                p { a.button href="/apps" { "Choose an app to start" } }
            }
        } @else {
            div.card {
                table.grains {
                    thead { tr { th { "Title" } th { "App" } th { "Size" } th { "State" } } }
                    tbody {
                        @for g in &live {
                            @let st = status.get(&g.id);
                            tr {
                                td { a href={ "/grains/" (g.id) } { (g.title) } }
                                td.muted { (app_title(apps, g)) }
                                td.muted { (st.and_then(|s| s.size).map(human_bytes).unwrap_or_else(|| "—".into())) }
                                td.muted { @if st.is_some_and(|s| s.running) { "running" } @else { "stopped" } }
                            }
                        }
                    }
                }
            }
        }
        @if !shared.is_empty() {
            h2.section { "Shared with me" }
            div.card #shared {
                table.grains {
                    tbody {
                        @for g in shared {
                            tr {
                                td { a href={ "/grains/" (g.id) } { (g.title) } }
                                td.muted { (app_title(apps, g)) }
                            }
                        }
                    }
                }
            }
        }
        @if !trash.is_empty() {
            h2.section { "Trash" }
            div.card {
                table.grains {
                    tbody {
                        @for g in &trash {
                            tr {
                                td { (g.title) }
                                td.muted { (app_title(apps, g)) }
                                td.actions {
                                    form method="post" action={ "/grains/" (g.id) "/restore" } { (csrf(v)) button.secondary type="submit" { "Restore" } }
                                    form method="post" action={ "/grains/" (g.id) "/delete" } data-confirm="Delete this grain and all its data for good?" {
                                        (csrf(v)) button.danger type="submit" { "Delete forever" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        script src="/static/confirm.js" {}
    })
}

/// What the grain page shows.
#[derive(Clone, Copy)]
pub struct GrainPage<'a> {
    pub grain: &'a Grain,
    pub app: Option<&'a InstalledApp>,
    pub is_owner: bool,
    /// The session's init URL, when the grain can be shown.
    pub frame: Option<&'a str>,
    pub running: bool,
    pub error: Option<&'a str>,
    /// Why the app keeps the grain awake (`stayAwake`), for the owner.
    pub wake_locks: &'a [String],
}

pub fn grain(v: &Viewer<'_>, p: &GrainPage<'_>) -> Markup {
    let g = p.grain;
    page(&g.title, Some(v), "home", false, html! {
        div.grainbar {
            @if p.is_owner {
                form.rename method="post" action={ "/grains/" (g.id) "/rename" } {
                    (csrf(v))
                    input type="text" name="title" value=(g.title) aria-label="Grain title" maxlength="200" required;
                    button.secondary type="submit" { "Rename" }
                }
            } @else {
                h1.grain-title { (g.title) }
            }
            span.muted { (p.app.map(|a| a.manifest.app_title.as_str()).unwrap_or("(app uninstalled)")) }
            @if g.trashed.is_none() {
                @if p.is_owner {
                    // Not running yet means this page's frame is starting it.
                    span.muted.state { @if p.running || p.frame.is_none() { @if p.running { "running" } @else { "stopped" } } @else { "starting" } }
                }
                a.button.secondary href={ "/grains/" (g.id) "/access" } { "Share" }
                @if p.is_owner {
                    a.button.secondary #reach-link href={ "/grains/" (g.id) "/reach" } { "What can this reach" }
                    form method="post" action={ "/grains/" (g.id) "/restart" } { (csrf(v)) button.secondary type="submit" { "Restart" } }
                    form method="post" action={ "/grains/" (g.id) "/trash" } { (csrf(v)) button.secondary type="submit" { "Move to trash" } }
                }
            }
        }
        @if let Some(e) = p.error { div.error role="alert" { (e) } }
        @if p.is_owner && !p.wake_locks.is_empty() {
            p.muted #wake-locks { "Kept awake by the app (it will not be stopped while idle): " (p.wake_locks.join("; ")) }
        }
        @if g.trashed.is_some() {
            div.card.empty {
                h2 { "This grain is in the trash" }
                p { "Restore it to open it again." }
                form method="post" action={ "/grains/" (g.id) "/restore" } { (csrf(v)) button type="submit" { "Restore" } }
            }
        } @else if let Some(src) = p.frame {
            // A name unique to this session origin: browsers restore a frame's last address
            // on Back and reload by its name, which would be the previous session's origin,
            // blocked by this page's `frame-src`.
            iframe.grain #grain-frame src=(src) name=(frame_name(src)) title=(g.title) {}
            dialog #powerbox data-grain=(g.id) data-csrf=(v.csrf) data-title=(g.title) aria-label="Grant access" {}
            script src="/static/powerbox.js" {}
            @if p.is_owner {
                details.log #grain-log data-src={ "/grains/" (g.id) "/log" } {
                    summary { "Debug log" }
                    pre #grain-log-text {}
                }
                script src="/static/log.js" {}
            }
        } @else {
            div.card.empty {
                h2 { "This grain's app is not installed" }
                p { "Install the app again to open the grain." }
            }
        }
    })
}

/// The "new grain" form for one action of an app.
pub fn new_grain_form(v: &Viewer<'_>, app: &InstalledApp, action: usize) -> Markup {
    let a = &app.manifest.actions[action];
    html! {
        form.newgrain method="post" action="/grains" {
            (csrf(v))
            input type="hidden" name="package_id" value=(app.package_id);
            input type="hidden" name="action" value=(action);
            input type="text" name="title" placeholder={ "Untitled " (a.noun_phrase) } aria-label={ "Title of the new " (a.noun_phrase) } maxlength="200";
            button type="submit" { (a.title) }
        }
    }
}

/// The grain frame's `name`: `grain-` and the session label of its init URL.
fn frame_name(src: &str) -> String {
    let host = src.split("//").nth(1).unwrap_or_default();
    format!("grain-{}", host.split(['.', ':', '/']).next().unwrap_or_default())
}

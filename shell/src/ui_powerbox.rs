//! "What can this reach": the grants a grain holds and the grains that hold something of it
//! (`/grains/<id>/reach`), and the grants a person made (`/reach`; administrators see all).

use crate::grains::Grain;
use crate::ui::{page, Viewer};
use maud::{html, Markup};

/// One grant as the pages show it.
pub struct GrantRow {
    pub id: String,
    pub what: String,
    pub held_by: String,
    /// What the holding grain called it.
    pub label: String,
    pub granted_by: String,
    pub created: u64,
    pub last_used: Option<u64>,
    pub revoked: bool,
    /// Saved from a capability the holder restored (revoked with its parent).
    pub child: bool,
    /// The grain this grant reaches, for grain-to-grain grants.
    pub reaches_grain: Option<String>,
}

/// "3 min ago", "2 days ago", or the date.
pub fn ago(then: u64) -> String {
    let now = crate::accounts::now();
    let d = now.saturating_sub(then);
    match d {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    }
}

fn table(v: &Viewer<'_>, rows: &[GrantRow], back: &str, id: &str) -> Markup {
    html! {
        div.card #(id) {
            table.grants {
                thead { tr { th { "What" } th { "Held by" } th { "Granted by" } th { "Granted" } th { "Last used" } th {} } }
                tbody {
                    @for r in rows {
                        tr data-grant=(r.id) {
                            td {
                                (r.what)
                                @if !r.label.is_empty() { br; small.muted { "“" (r.label) "”" } }
                                @if r.child { br; small.muted { "passed on from another grant" } }
                            }
                            td.muted { (r.held_by) }
                            td.muted { (r.granted_by) }
                            td.muted { (ago(r.created)) }
                            td.muted { @if let Some(t) = r.last_used { (ago(t)) } @else { "never" } }
                            td {
                                @if r.revoked {
                                    span.muted { "revoked" }
                                } @else {
                                    form method="post" action={ "/grants/" (r.id) "/revoke" } data-confirm="Revoke this grant? The grain loses it at once." {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        input type="hidden" name="back" value=(back);
                                        button.secondary type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn grain_reach(v: &Viewer<'_>, g: &Grain, held: &[GrantRow], into: &[GrantRow], tokens: &[(crate::grain_tokens::GrainToken, String)]) -> Markup {
    let back = format!("/grains/{}/reach", g.id);
    page(&format!("What {} can reach", g.title), Some(v), "home", false, html! {
        p { a href={ "/grains/" (g.id) } { "← " (g.title) } }
        h1 { "What this grain can reach" }
        @if held.is_empty() {
            div.card.empty #reach-held { p { "Nothing: this grain can reach nothing outside itself. Grants you make when it asks appear here." } }
        } @else {
            (table(v, held, &back, "reach-held"))
        }
        h2.section { "Grains that can reach this one" }
        @if into.is_empty() {
            div.card.empty #reach-into { p { "No other grain holds access to this grain." } }
        } @else {
            (table(v, into, &back, "reach-into"))
        }
        h2.section { "Programs with an API token" }
        @if tokens.is_empty() {
            div.card.empty #reach-tokens { p { "No API tokens. The grain's app can offer you one for a program outside this server." } }
        } @else {
            div.card #reach-tokens {
                table.grants {
                    thead { tr { th { "Name" } th { "Made by" } th { "Made" } th {} } }
                    tbody {
                        @for (t, by) in tokens {
                            tr data-token=(t.id) {
                                td { (t.petname) }
                                td.muted { (by) }
                                td.muted { (ago(t.created)) }
                                td {
                                    form method="post" action={ "/grains/" (g.id) "/api-tokens/" (t.id) "/revoke" } data-confirm="Revoke this API token? Programs using it stop working at once." {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button.secondary type="submit" { "Revoke" }
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

pub fn user_reach(v: &Viewer<'_>, mine: &[GrantRow], all: Option<&[GrantRow]>) -> Markup {
    page("Your grants", Some(v), "home", false, html! {
        h1 { "What you have granted" }
        @if mine.is_empty() {
            div.card.empty #reach-mine { p { "You have not granted any grain access to anything yet." } }
        } @else {
            (table(v, mine, "/reach", "reach-mine"))
        }
        @if let Some(all) = all {
            h2.section { "Every grant on this server" }
            @if all.is_empty() {
                div.card.empty #reach-all { p { "No grants." } }
            } @else {
                (table(v, all, "/reach", "reach-all"))
            }
        }
        script src="/static/confirm.js" {}
    })
}

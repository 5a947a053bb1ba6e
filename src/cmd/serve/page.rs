//! The page: HTML from maud templates (checked at compile time, text
//! escaped), the script and style embedded in the binary.

use super::auth::Who;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use maud::{html, Markup, DOCTYPE};

fn page(title: &str, body: Markup) -> Html<String> {
    Html(shell(title, body).into_string())
}

fn shell(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/static/app.css";
            }
            body { (body) }
        }
    }
}

/// The login form, with an optional message (wrong PIN, locked).
pub fn login(msg: Option<&str>) -> Html<String> {
    page(
        "Voicemail login",
        html! {
            main class="login" {
                h1 { "Voicemail" }
                @if let Some(m) = msg { p class="error" role="alert" { (m) } }
                form method="post" action="/login" {
                    label { "Mailbox (box@context), or admin name" input name="mailbox" autocomplete="username" required; }
                    label { "PIN or password" input name="pin" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// The logged-in page; the script fills it through the JSON API. An
/// admin's starts with every box and a search; a box owner's with the box.
pub fn app(who: &Who) -> Html<String> {
    let (role, name) = match who {
        Who::Owner(mb) => ("owner", mb.to_string()),
        Who::Admin(n) => ("admin", format!("admin {n}")),
    };
    page(
        "Voicemail",
        html! {
            header data-role=(role) {
                h1 { "Voicemail " span id="who" { (name) } }
                button id="logout" type="button" { "Log out" }
            }
            @if role == "admin" {
                section id="admin" {
                    h2 { "Boxes" }
                    form id="search" {
                        label { "Caller name or number " input id="caller" name="caller" type="search" required; }
                        button type="submit" { "Search all boxes" }
                    }
                    table id="results" hidden {
                        thead { tr { th { "Box" } th { "Folder" } th { "Caller" } th { "Date" } th { "Duration" } } }
                        tbody {}
                    }
                    table id="boxes" {
                        thead { tr { th { "Box" } th { "Owner" } th { "New" } th { "Old" } th { "Urgent" } th { "State" } } }
                        tbody {}
                    }
                }
            }
            main class="app" id="box" hidden[role == "admin"] {
                h2 id="mailbox" {}
                div class="columns" {
                    nav id="folders" aria-label="Folders" {}
                    section {
                        p id="status" role="status" {}
                        table id="messages" {
                            thead { tr { th { "Caller" } th { "Date" } th { "Duration" } th { "" } th { "Waveform" } th { "Play" } th { "Actions" } } }
                            tbody {}
                        }
                        h3 { "Greetings" }
                        table id="greetings" {
                            thead { tr { th { "Greeting" } th { "Play" } th { "Record from a file" } th { "" } } }
                            tbody {}
                        }
                    }
                }
            }
            script src="/static/app.js" {}
        },
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("app.js"),
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("app.css"),
    )
}

//! The page: HTML from maud templates (checked at compile time, text
//! escaped), the script and style embedded in the binary.

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
                    label { "Mailbox (box@context)" input name="mailbox" autocomplete="username" required; }
                    label { "PIN" input name="pin" type="password" inputmode="numeric" autocomplete="current-password" required; }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// The logged-in page; the script fills it through the JSON API.
pub fn app(mailbox: &str) -> Html<String> {
    page(
        "Voicemail",
        html! {
            header {
                h1 { "Voicemail " span id="mailbox" { (mailbox) } }
                button id="logout" type="button" { "Log out" }
            }
            main class="app" {
                nav id="folders" aria-label="Folders" {}
                section {
                    p id="status" role="status" {}
                    table id="messages" {
                        thead { tr { th { "Caller" } th { "Date" } th { "Duration" } th { "" } th { "Play" } th { "Actions" } } }
                        tbody {}
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

//! The pages' common stylesheet and script, and the page around them.
//!
//! Both are plain files embedded in the binary with `include_str!`: no
//! build step, and nothing fetched from another site, so a page works on
//! a network that reaches only the service. [`routes`] serves them at
//! [`CSS_PATH`] and [`JS_PATH`]; [`page`] renders a page that loads them.
//!
//! `dom.js` defines one global, `dom`, with small helpers (`dom.esc`,
//! `dom.ago`, `dom.ms`, `dom.bytes`), `dom.live` (an `EventSource` that
//! shows whether the page is live) and `dom.Table`: a sortable,
//! filterable table kept as a map by key that renders only one page of
//! rows, at most a few times a second, so ten thousand rows changing
//! live never freeze the browser. See the comments in the file.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

/// The stylesheet.
pub const CSS: &str = include_str!("assets/dom.css");
/// The script.
pub const JS: &str = include_str!("assets/dom.js");
/// Where [`routes`] serves them.
pub const CSS_PATH: &str = "/static/dom.css";
pub const JS_PATH: &str = "/static/dom.js";

/// A router serving the stylesheet and the script.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let asset = |kind: &'static str, body: &'static str| {
        get(move || async move {
            ([(CONTENT_TYPE, kind), (CACHE_CONTROL, "no-cache")], body).into_response()
        })
    };
    Router::new()
        .route(CSS_PATH, asset("text/css; charset=utf-8", CSS))
        .route(JS_PATH, asset("text/javascript; charset=utf-8", JS))
}

/// A whole page: `title` (escaped here) in the head and as the heading,
/// `nav` links (`(href, label)`, escaped here), then `body`, which is
/// HTML the caller built with [`escape`]d values.
pub fn page(title: &str, nav: &[(&str, &str)], body: &str) -> Html<String> {
    let links: String = nav
        .iter()
        .map(|(href, label)| format!(r#"<a href="{}">{}</a>"#, escape(href), escape(label)))
        .collect::<Vec<_>>()
        .join(" ");
    let title = escape(title);
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{CSS_PATH}">
<script src="{JS_PATH}"></script>
</head><body>
<header><h1>{title}</h1><nav>{links}</nav><span id="live" class="live"></span></header>
<main>
{body}
</main>
</body></html>
"#
    ))
}

/// `text` with the characters HTML gives a meaning to replaced, safe in
/// element content and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_page_escapes_its_title_and_links() {
        let Html(html) = page("web<1>", &[("/m?h=a&b", "x<y")], "<p>ok</p>");
        assert!(html.contains("<title>web&lt;1&gt;</title>"));
        assert!(html.contains(r#"<a href="/m?h=a&amp;b">x&lt;y</a>"#));
        assert!(html.contains("<p>ok</p>") && html.contains(JS_PATH));
    }
}

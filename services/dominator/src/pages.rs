//! The status pages rendered on the server: one per machine, one per
//! image, and the image list. Plain HTML, every value escaped; the live
//! machine table is the front page's script ([`crate::http`]).

use std::fmt::Write;
use std::time::Duration;

use dom_bus::Bus;
use dom_model::manifest::listing;
use dom_model::report::UpdateResult;
use dom_model::{
    Event, ImageMessage, ImageName, ImageRecord, MachineStatus, Manifest, StateReport,
};
use dom_store::{ContentStore, Store};
use dom_web::axum::http::StatusCode;
use dom_web::axum::response::{IntoResponse, Response};
use dom_web::{escape, page};

use crate::live::status_word;
use crate::status::Board;

/// Events shown on a machine's page, newest first.
pub const EVENTS_SHOWN: usize = 50;
/// Paths shown on an image's page.
pub const PATHS_SHOWN: usize = 5000;
/// Longest wait for the bus while rendering a page.
const BUS_TIMEOUT: Duration = Duration::from_secs(10);

const NAV: &[(&str, &str)] = &[
    ("/", "machines"),
    ("/images", "images"),
    ("/metrics", "metrics"),
];

fn not_found(what: &str) -> Response {
    let body = format!("<p class=\"bad\">{}</p>", escape(what));
    (StatusCode::NOT_FOUND, page("not found", NAV, &body)).into_response()
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    let body = format!(
        "<p class=\"bad\">{}: {}</p>",
        escape(what),
        escape(&e.to_string())
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page("unavailable", NAV, &body),
    )
        .into_response()
}

async fn with_timeout<T, E: std::fmt::Display>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Response> {
    match tokio::time::timeout(BUS_TIMEOUT, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unavailable(what, e)),
        Err(_) => Err(unavailable(what, "the NATS server did not answer in time")),
    }
}

fn image_link(name: &str) -> String {
    format!(r#"<a href="/images/{}">{}</a>"#, escape(name), escape(name))
}

fn machine_link(host: &str) -> String {
    format!(
        r#"<a href="/machines/{}">{}</a>"#,
        escape(host),
        escape(host)
    )
}

fn kv(out: &mut String, key: &str, value_html: &str) {
    let _ = write!(out, "<dt>{}</dt><dd>{value_html}</dd>", escape(key));
}

fn pretty(value: &impl serde::Serialize) -> String {
    escape(&serde_json::to_string_pretty(value).unwrap_or_default())
}

fn update_html(update: &UpdateResult) -> String {
    let mut out = format!(
        "{} to {} at {}, took {} ms",
        if update.ok {
            "<span class=\"ok\">ok</span>"
        } else {
            "<span class=\"bad\">failed</span>"
        },
        image_link(&update.image),
        escape(&update.started),
        update.duration_ms
    );
    match update.transition_ms {
        Some(ms) => {
            let _ = write!(out, "; in transition {ms} ms");
        }
        None => out.push_str("; no service stopped"),
    }
    let _ = write!(out, "; {} paths changed", update.changed);
    if let Some(error) = &update.error {
        let _ = write!(out, "<br><span class=\"bad\">{}</span>", escape(error));
    }
    for failure in &update.trigger_failures {
        let _ = write!(out, "<br><span class=\"warn\">{}</span>", escape(failure));
    }
    out
}

/// `GET /machines/{host}`: the machine's status, state report and last
/// events.
pub async fn machine(board: &Board, bus: &Bus, host: &str) -> Response {
    let decision = board.decision();
    let machine = decision.as_deref().and_then(|d| d.machine(host));
    let report = board.report(host);
    if machine.is_none() && report.is_none() {
        return not_found(&format!(
            "no machine {host} in the MDB, and no state report from it"
        ));
    }
    let events = match with_timeout("reading the machine's events", bus.events(host)).await {
        Ok(events) => events,
        Err(response) => return response,
    };
    let mut body = String::new();
    body.push_str("<dl class=\"kv\">");
    match machine {
        Some(m) => machine_facts(&mut body, m, report.as_deref()),
        None => kv(
            &mut body,
            "MDB",
            "<span class=\"warn\">not in the MDB (unmanaged)</span>",
        ),
    }
    if let Some(r) = report.as_deref() {
        report_facts(&mut body, r);
    }
    body.push_str("</dl>");
    let _ = write!(body, "<h2>Last events</h2>{}", events_table(&events));
    if let Some(desired) = machine.and_then(|m| m.desired.as_ref()) {
        let _ = write!(body, "<h2>Desired state</h2><pre>{}</pre>", pretty(desired));
    }
    if let Some(r) = report.as_deref() {
        let _ = write!(body, "<h2>State report</h2><pre>{}</pre>", pretty(r));
    }
    page(host, NAV, &body).into_response()
}

fn machine_facts(out: &mut String, m: &MachineStatus, report: Option<&StateReport>) {
    let word = status_word(m, report);
    let class = match word {
        "compliant" => "ok",
        "error" => "bad",
        _ => "warn",
    };
    kv(
        out,
        "status",
        &format!("<span class=\"{class}\" id=\"status\">{word}</span>"),
    );
    let image = |i: Option<&str>| {
        i.map(image_link)
            .unwrap_or_else(|| "<span class=\"muted\">none</span>".into())
    };
    kv(
        out,
        "required image",
        &image(m.required.as_ref().map(|i| i.as_str())),
    );
    kv(
        out,
        "planned image",
        &image(m.planned.as_ref().map(|i| i.as_str())),
    );
    kv(out, "current image", &image(m.current.as_deref()));
    kv(out, "updating", if m.updating { "yes" } else { "no" });
    kv(
        out,
        "updates allowed",
        if m.updates_allowed() { "yes" } else { "no" },
    );
    if let Some(error) = &m.error {
        kv(
            out,
            "error",
            &format!("<span class=\"bad\">{}</span>", escape(error)),
        );
    }
    if let Some(error) = &m.planned_error {
        kv(
            out,
            "planned image error",
            &format!("<span class=\"warn\">{}</span>", escape(error)),
        );
    }
    if let Some(held) = &m.held {
        kv(out, "held", &escape(&held.to_string()));
    }
    if m.high_impact || m.high_impact_requested {
        let state = if m.high_impact {
            "granted"
        } else {
            "requested, waiting"
        };
        kv(out, "HighImpact", state);
    }
    if m.safety_cleared {
        kv(
            out,
            "safety shutoff",
            "cleared by an operator for the required image",
        );
    }
}

fn report_facts(out: &mut String, r: &StateReport) {
    kv(out, "deviations", &r.deviations.to_string());
    kv(
        out,
        "last update",
        &r.last_update
            .as_ref()
            .map(update_html)
            .unwrap_or_else(|| "<span class=\"muted\">none yet</span>".into()),
    );
    if let Some(error) = &r.error {
        kv(
            out,
            "agent error",
            &format!("<span class=\"bad\">{}</span>", escape(error)),
        );
    }
    let activity = match (r.fetching, r.updating) {
        (true, _) => "fetching",
        (_, true) => "updating",
        _ => "idle",
    };
    kv(
        out,
        "agent",
        &format!(
            "{activity}; version {}, up {} s, scan generation {}, {} full scans",
            escape(&r.agent_version),
            r.uptime_s,
            r.generation,
            r.scan.full_scans
        ),
    );
}

fn events_table(events: &[Event]) -> String {
    if events.is_empty() {
        return "<p class=\"muted\">none</p>".into();
    }
    let mut out = String::from(
        "<table id=\"events\"><thead><tr><th>time</th><th>kind</th><th>image</th><th>message</th></tr></thead><tbody>",
    );
    for event in events.iter().rev().take(EVENTS_SHOWN) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&event.time),
            escape(&event.kind),
            event.image.as_deref().map(image_link).unwrap_or_default(),
            escape(&event.message)
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// `GET /images`: every image, with how many machines require it.
pub async fn images(board: &Board, bus: &Bus) -> Response {
    let stored = match with_timeout("listing images", bus.images()).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let decision = board.decision();
    let mut required = std::collections::HashMap::<&str, usize>::new();
    for m in decision.iter().flat_map(|d| &d.machines) {
        if let Some(image) = &m.required {
            *required.entry(image.as_str()).or_default() += 1;
        }
    }
    let now = crate::now_unix();
    let mut body = String::from(
        "<table id=\"images\"><thead><tr><th>image</th><th>kind</th><th class=\"num\">files</th>\
         <th class=\"num\">bytes</th><th>created</th><th>by</th><th>expires</th>\
         <th class=\"num\">machines requiring it</th></tr></thead><tbody>",
    );
    for s in &stored {
        match &s.message {
            ImageMessage::Record(r) => {
                let expires = match (&r.expires, r.is_expired(now)) {
                    (Some(_), true) => "<span class=\"bad\">expired</span>".to_string(),
                    (Some(when), false) => escape(when),
                    (None, _) => String::new(),
                };
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td>{}</td><td>{}</td><td>{expires}</td><td class=\"num\">{}</td></tr>",
                    image_link(r.name.as_str()),
                    if r.sparse { "sparse" } else { "normal" },
                    r.files,
                    r.bytes,
                    escape(&r.created),
                    escape(&r.creator),
                    required.get(r.name.as_str()).unwrap_or(&0)
                );
            }
            ImageMessage::Deleted(t) => {
                let _ = write!(
                    body,
                    "<tr class=\"muted\"><td>{}</td><td>deleted</td><td></td><td></td><td>{}</td>\
                     <td>{}</td><td></td><td class=\"num\">{}</td></tr>",
                    escape(t.name.as_str()),
                    escape(&t.deleted_at),
                    escape(&t.by),
                    required.get(t.name.as_str()).unwrap_or(&0)
                );
            }
        }
    }
    body.push_str("</tbody></table>");
    if stored.is_empty() {
        body.push_str("<p class=\"muted\">no images yet</p>");
    }
    page("images", NAV, &body).into_response()
}

/// `GET /images/{name}`: the image's record, filter, triggers, the
/// machines that require or plan it, and its files.
pub async fn image(board: &Board, bus: &Bus, name: &str) -> Response {
    let Ok(name) = ImageName::parse(name) else {
        return not_found(&format!("{name:?} is not a valid image name"));
    };
    let record = match with_timeout("reading the image", bus.image(&name)).await {
        Ok(Some(stored)) => stored.message,
        Ok(None) => return not_found(&format!("no image {name}")),
        Err(response) => return response,
    };
    let record = match record {
        ImageMessage::Record(record) => record,
        ImageMessage::Deleted(t) => {
            let body = format!(
                "<p class=\"warn\">deleted at {} by {}</p>",
                escape(&t.deleted_at),
                escape(&t.by)
            );
            return page(name.as_str(), NAV, &body).into_response();
        }
    };
    let mut body = facts(&record);
    body.push_str(&filter_and_triggers(&record));
    body.push_str(&machines_on(board, &name));
    body.push_str(&files_section(bus, &record).await);
    page(name.as_str(), NAV, &body).into_response()
}

/// The facts of an image's record, as a definition list.
fn facts(record: &ImageRecord) -> String {
    let mut body = String::from("<dl class=\"kv\">");
    kv(
        &mut body,
        "kind",
        if record.sparse { "sparse" } else { "normal" },
    );
    kv(
        &mut body,
        "files",
        &format!(
            "{} ({} bytes), {} inodes",
            record.files, record.bytes, record.inodes
        ),
    );
    kv(
        &mut body,
        "created",
        &format!("{} by {}", escape(&record.created), escape(&record.creator)),
    );
    if let Some(expires) = &record.expires {
        kv(&mut body, "expires", &escape(expires));
    }
    kv(
        &mut body,
        "manifest",
        &format!("<code>{}</code>", escape(&record.manifest.to_string())),
    );
    body.push_str("</dl>");
    body
}

/// An image's filter and triggers.
fn filter_and_triggers(record: &ImageRecord) -> String {
    let mut body = String::new();
    match &record.filter {
        None => body.push_str("<h2>Filter</h2><p class=\"muted\">none: a sparse image</p>"),
        Some(lines) => {
            let _ = write!(
                body,
                "<h2>Filter</h2><pre id=\"filter\">{}</pre>",
                escape(&lines.join("\n"))
            );
        }
    }
    if record.triggers.is_empty() {
        body.push_str("<h2>Triggers</h2><p class=\"muted\">none</p>");
    } else {
        let _ = write!(
            body,
            "<h2>Triggers</h2><pre id=\"triggers\">{}</pre>",
            pretty(&record.triggers)
        );
    }
    body
}

/// The machines that require `name`, and those that plan it.
fn machines_on(board: &Board, name: &ImageName) -> String {
    let mut body = String::new();
    let decision = board.decision();
    let machines = decision.as_deref().map_or(&[][..], |d| &d.machines[..]);
    let requiring: Vec<&MachineStatus> = machines
        .iter()
        .filter(|m| m.required.as_ref() == Some(name))
        .collect();
    let planning: Vec<&MachineStatus> = machines
        .iter()
        .filter(|m| m.planned.as_ref() == Some(name))
        .collect();
    let _ = write!(body, "<h2>Machines requiring it ({})</h2>", requiring.len());
    body.push_str(&machine_list(&requiring, "requiring"));
    if !planning.is_empty() {
        let _ = write!(body, "<h2>Machines planning it ({})</h2>", planning.len());
        body.push_str(&machine_list(&planning, "planning"));
    }
    body
}

/// An image's files, as `imagetool show` lists them; an error if the
/// manifest cannot be read in time.
async fn files_section(bus: &Bus, record: &ImageRecord) -> String {
    let mut body = String::new();
    body.push_str("<h2>Files</h2>");
    let manifest = async {
        let store = Store::open(bus).await.map_err(|e| e.to_string())?;
        let stored = store.manifest(record.manifest).await;
        stored.map(|s| s.manifest).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(BUS_TIMEOUT, manifest).await {
        Ok(Ok(manifest)) => body.push_str(&files(&manifest)),
        Ok(Err(e)) => {
            let _ = write!(
                body,
                "<p class=\"bad\">cannot read the manifest: {}</p>",
                escape(&e)
            );
        }
        Err(_) => body.push_str(
            "<p class=\"bad\">cannot read the manifest: the NATS server did not answer in time</p>",
        ),
    }
    body
}

fn machine_list(machines: &[&MachineStatus], id: &str) -> String {
    if machines.is_empty() {
        return "<p class=\"muted\">none</p>".into();
    }
    let mut out = format!("<p id=\"{id}\">");
    let links: Vec<String> = machines
        .iter()
        .map(|m| {
            let class = if m.compliant { "ok" } else { "warn" };
            format!("<span class=\"{class}\">{}</span>", machine_link(&m.host))
        })
        .collect();
    out.push_str(&links.join(", "));
    out.push_str("</p>");
    out
}

fn files(manifest: &Manifest) -> String {
    let mut out = String::from("<pre id=\"files\">");
    for line in listing::lines(manifest).take(PATHS_SHOWN) {
        out.push_str(&escape(&line));
        out.push('\n');
    }
    out.push_str("</pre>");
    if manifest.entries.len() > PATHS_SHOWN {
        let _ = write!(
            out,
            "<p class=\"muted\">the first {PATHS_SHOWN} of {} paths; <code>imagetool show</code> lists them all</p>",
            manifest.entries.len()
        );
    }
    out
}

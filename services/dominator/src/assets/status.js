// The dominator's status page: the summary, the last hour's chart
// (chart.js) and the machine table, kept live by the server-sent events
// of /live (a snapshot, then changes and the chart's samples).
"use strict";
(() => {
  const esc = dom.esc;
  const words = { compliant: "ok", error: "bad", updating: "warn" };
  const image = (name) => name ? `<a href="/images/${esc(name)}">${esc(name)}</a>` : "";

  const lastUpdate = (u) => {
    if (!u) return "";
    const how = u.ok ? '<span class="ok">ok</span>' : '<span class="bad">failed</span>';
    const window = u.transition_ms == null ? "" : `, in transition ${dom.ms(u.transition_ms)}`;
    return `${how} ${image(u.image)} <span class="muted" title="${esc(u.started)}">${dom.ago(u.started)}, ` +
      `took ${dom.ms(u.duration_ms)}${window}</span>`;
  };

  const problem = (m) => m.error || m.agent_error || (m.last_update && !m.last_update.ok && m.last_update.error) || "";

  const columns = [
    { key: "host", title: "host", value: (m) => m.host,
      html: (m) => `<a href="/machines/${esc(m.host)}">${esc(m.host)}</a>` },
    { key: "status", title: "status", value: (m) => m.status,
      html: (m) => `<span class="${words[m.status] || "warn"} status">${esc(m.status)}</span>` },
    { key: "required", title: "required image", value: (m) => m.required || "", html: (m) => image(m.required) },
    { key: "current", title: "current image", value: (m) => m.current || "", html: (m) => image(m.current) },
    { key: "compliant", title: "compliant", value: (m) => (m.compliant ? 1 : 0),
      html: (m) => (m.compliant ? '<span class="ok">yes</span>' : (m.reported ? "no" : '<span class="muted">?</span>')) },
    { key: "deviations", title: "deviations", num: true, value: (m) => m.deviations,
      html: (m) => (m.deviations == null ? "" : String(m.deviations)) },
    { key: "update", title: "last update", value: (m) => (m.last_update ? m.last_update.started : ""),
      html: (m) => lastUpdate(m.last_update) },
    { key: "error", title: "error, or why held", value: (m) => problem(m) || m.held || "",
      html: (m) => problem(m) ? `<span class="bad">${esc(problem(m))}</span>` : `<span class="muted">${esc(m.held || "")}</span>` },
  ];

  const show = document.getElementById("show");
  const matches = (m, text) => {
    const want = show.value;
    if (want === "!compliant" && m.compliant) return false;
    if (want && want !== "!compliant" && m.status !== want) return false;
    if (!text) return true;
    return [m.host, m.status, m.required, m.current, problem(m), m.held]
      .some((v) => v && String(v).toLowerCase().includes(text));
  };
  const table = new dom.Table(document.getElementById("machines"), columns,
    { key: (m) => m.host, pageSize: 100, filter: matches, sort: "host" });
  show.addEventListener("change", () => table.now());

  const card = (n, label, cls) => `<div class="card"><div class="n ${cls || ""}">${esc(n)}</div><div class="l">${esc(label)}</div></div>`;

  const summary = (s) => {
    const banner = document.getElementById("banner");
    const f = s.fleet;
    if (!s.caught_up || !f) {
      banner.className = "banner"; banner.textContent = "catching up with the streams\u2026";
    } else if (!s.active) {
      banner.className = "banner";
      banner.textContent = `standby: ${s.id} follows the fleet; ${s.active_dominator || "another dominator"} is active`;
    } else if (f.updates.state === "disabled") {
      banner.className = "banner bad";
      banner.innerHTML = `<b>updates are disabled for the fleet</b> by ${esc(f.updates.by)}: ${esc(f.updates.reason)}`;
    } else {
      banner.className = "banner ok"; banner.textContent = "updates are enabled";
    }
    // One line per rollout under way; a halted or aborted one says why and
    // which machines failed.
    document.getElementById("rollouts").innerHTML = (s.rollouts || []).map((r) => {
      const counts = `${r.done} of ${r.machines} done, ${r.moving} moving, ${r.waiting} waiting`;
      if (r.phase === "halted" || r.phase === "aborted") {
        const failed = r.failed.map((m) => `${esc(m.host)} (${esc(m.why)})`).join(", ");
        return `<div class="banner bad rollout" data-image="${esc(r.image)}"><b>the rollout of ${image(r.image)} is ${esc(r.phase)}</b>` +
          `${r.by ? ` by ${esc(r.by)}` : ""}: ${esc(r.reason || "")}${failed ? `; failed: ${failed}` : ""}. ${counts}. ` +
          `<span class="muted">domtool rollout resume|abort ${esc(r.image)}</span></div>`;
      }
      return `<div class="banner rollout" data-image="${esc(r.image)}">rolling out ${image(r.image)}: wave ${r.wave}, ${counts}</div>`;
    }).join("");
    if (f) {
      document.getElementById("cards").innerHTML = [
        card(f.machines, "machines"),
        card(f.compliant, "compliant", f.compliant === f.machines ? "ok" : ""),
        card(`${f.updating} / ${f.max_updating}`, "updating"),
        card(f.errors, "in error", f.errors ? "bad" : ""),
        card(f.held, "held", f.held ? "warn" : ""),
        card(f.paused, "paused", f.paused ? "warn" : ""),
        card(f.safety_shutoffs, "safety shutoffs", f.safety_shutoffs ? "bad" : ""),
        card(`${f.high_impact} / ${f.max_high_impact}`, "HighImpact grants"),
        card(f.without_image, "without image"),
        card(s.rejected_mdb, "MDB records refused", s.rejected_mdb ? "bad" : ""),
        card(s.unmanaged, "unmanaged"),
      ].join("");
    }
    document.getElementById("round").textContent =
      `round ${s.rounds}${s.last_round ? ` at ${s.last_round}` : ""}, ${s.desired_published} desired states published`;
  };

  const chart = new FleetChart(document.getElementById("chart"));

  dom.live("/live", {
    snapshot: (d) => {
      summary(d.summary); chart.history(d.history); chart.now(d.summary);
      table.rows.clear(); d.machines.forEach((m) => table.rows.set(m.host, m)); table.now();
    },
    changes: (d) => { summary(d.summary); chart.now(d.summary); d.machines.forEach((m) => table.put(m)); d.removed.forEach((h) => table.remove(h)); },
    sample: (s) => chart.sample(s),
  });
  window.dominatorStatus = { table, chart };
})();

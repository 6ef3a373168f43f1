// The status page's chart: how many machines were compliant, updating
// and in error over the last hour, drawn as inline SVG.
//
// It is fed by the page's own event stream (/live): `history` with the
// snapshot's samples, `sample` with each new one (every 10 s), and `now`
// with the summary of every event, which is drawn as the lines' right
// edge, so a change shows at once rather than at the next sample. The
// dominator's clock (the summary's `now`, a sample's `at`) places the
// points, whatever the browser's clock says.
"use strict";
window.FleetChart = (() => {
  const W = 720, H = 150, LEFT = 40, RIGHT = 12, TOP = 12, BOTTOM = 24;
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
  const SVG = "http://www.w3.org/2000/svg";
  // Drawn in this order, the most urgent on top.
  const series = [
    { key: "all", label: "machines" },
    { key: "compliant", label: "compliant" },
    { key: "updating", label: "updating" },
    { key: "error", label: "in error" },
  ];

  class FleetChart {
    constructor(el) {
      this.el = el;
      this.samples = []; // { t: ms, all, compliant, updating, error }, oldest first
      this.every = 10;
      this.windowMs = 3600 * 1000;
      this.current = null; // the counts of the last summary
      this.offset = 0; // the dominator's clock minus the browser's
      this.queued = false;
      el.innerHTML =
        `<div class="chart-legend"></div>` +
        `<svg xmlns="${SVG}" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="chart-title">` +
        `<title id="chart-title"></title><g class="plot"></g></svg>`;
      this.legend = el.querySelector(".chart-legend");
      this.svg = el.querySelector("svg");
      this.title = el.querySelector("title");
      this.plot = el.querySelector(".plot");
      this.draw();
    }

    clock(at) {
      const t = Date.parse(at);
      if (!Number.isNaN(t)) this.offset = t - Date.now();
    }

    // The snapshot's history: every sample of the last hour.
    history(h) {
      this.every = h.every_s || this.every;
      this.windowMs = (h.window_s || 3600) * 1000;
      this.samples = h.samples.map(point);
      this.later();
    }

    // One new sample.
    sample(s) {
      this.clock(s.at);
      const p = point(s);
      while (this.samples.length && this.samples[this.samples.length - 1].t > p.t) this.samples.pop();
      this.samples.push(p);
      this.later();
    }

    // The summary of an event: its counts are the lines' right edge.
    now(summary) {
      if (summary.now) this.clock(summary.now);
      const f = summary.fleet;
      this.current = f ? { all: f.machines, compliant: f.compliant, updating: f.updating, error: f.errors } : null;
      this.later();
    }

    later() {
      if (this.queued) return;
      this.queued = true;
      requestAnimationFrame(() => { this.queued = false; this.draw(); });
    }

    draw() {
      const now = Date.now() + this.offset;
      const from = now - this.windowMs;
      while (this.samples.length && this.samples[0].t < from) this.samples.shift();
      const last = this.current || this.samples[this.samples.length - 1] || null;
      this.legend.innerHTML = series.map((s) =>
        `<span class="key ${s.key}" data-series="${s.key}"><i></i>${s.label} ` +
        `<b class="v">${last ? last[s.key] : "\u2013"}</b></span>`).join("");
      this.title.textContent = last
        ? `Last hour of the fleet: now ${last.compliant} of ${last.all} machines compliant, ` +
          `${last.updating} updating, ${last.error} in error`
        : "Last hour of the fleet: no data yet";
      this.svg.setAttribute("aria-label", this.title.textContent);
      this.el.classList.toggle("empty", !last);

      const points = this.current ? this.samples.concat([{ t: now, ...this.current }]) : this.samples;
      const top = Math.max(1, ...points.map((p) => p.all));
      const x = (t) => LEFT + Math.max(0, Math.min(1, (t - from) / this.windowMs)) * plotW;
      const y = (n) => TOP + plotH - (n / top) * plotH;
      let out = "";
      // The frame: gridlines with counts, the time axis.
      for (const n of [...new Set([0, Math.round(top / 2), top])]) {
        out += `<line class="grid" x1="${LEFT}" x2="${W - RIGHT}" y1="${y(n)}" y2="${y(n)}"/>` +
          `<text class="axis" x="${LEFT - 6}" y="${y(n) + 4}" text-anchor="end">${n}</text>`;
      }
      for (const m of [60, 45, 30, 15, 0]) {
        const at = LEFT + plotW * (1 - m / 60);
        const anchor = m === 60 ? "start" : m === 0 ? "end" : "middle";
        out += `<text class="axis" x="${at}" y="${H - 6}" text-anchor="${anchor}">${m ? `\u2212${m} min` : "now"}</text>`;
      }
      if (!points.length) {
        out += `<text class="nodata" x="${LEFT + plotW / 2}" y="${TOP + plotH / 2}" text-anchor="middle">no data yet</text>`;
      }
      // Each count holds until the next point: steps, broken where
      // samples are missing (before the replay was over, a restart).
      const gap = 2.5 * this.every * 1000;
      for (const s of series) {
        let d = "";
        points.forEach((p, i) => {
          const prev = points[i - 1];
          if (!prev || p.t - prev.t > gap) d += `M${x(p.t)},${y(p[s.key])}`;
          else d += `H${x(p.t)}V${y(p[s.key])}`;
        });
        if (d) out += `<path class="line ${s.key}" data-series="${s.key}" d="${d}"/>`;
        if (last && points.length) {
          out += `<circle class="dot ${s.key}" cx="${x(points[points.length - 1].t)}" cy="${y(last[s.key])}" r="2.5"/>`;
        }
      }
      this.plot.innerHTML = out;
      this.plot.dataset.points = String(this.samples.length);
    }
  }

  const point = (s) => ({ t: Date.parse(s.at), all: s.all, compliant: s.compliant, updating: s.updating, error: s.error });
  return FleetChart;
})();

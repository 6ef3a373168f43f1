// Helpers shared by the status pages. One global: `dom`.
"use strict";
const dom = (() => {
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  // "12 s ago", "3 min ago", ... for an RFC 3339 time; "" for none.
  const ago = (when) => {
    if (!when) return "";
    const s = Math.round((Date.now() - Date.parse(when)) / 1000);
    if (!isFinite(s)) return esc(when);
    if (s < 60) return `${Math.max(s, 0)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  };

  // A duration in milliseconds, for people.
  const ms = (n) => {
    if (n == null) return "";
    if (n < 1000) return `${n} ms`;
    if (n < 60000) return `${(n / 1000).toFixed(1)} s`;
    return `${(n / 60000).toFixed(1)} min`;
  };

  const bytes = (n) => {
    if (n == null) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  };

  // Follows server-sent events at `url`: `handlers` maps an event name to
  // a function of its parsed JSON data. The #live element says whether
  // the page is live; the browser reconnects by itself.
  const live = (url, handlers) => {
    const mark = (on) => {
      const el = document.getElementById("live");
      if (el) { el.className = on ? "live on" : "live off"; el.textContent = on ? "live" : "reconnecting"; }
    };
    const source = new EventSource(url);
    source.onopen = () => mark(true);
    source.onerror = () => mark(false);
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
    }
    return source;
  };

  // A table of rows kept by key, sorted and filtered in the browser, of
  // which only one page is in the document.
  //
  // columns: [{ key, title, value: row => sortable value,
  //             html: row => cell HTML (escape it), num: bool }]
  // options: { key: row => key, pageSize (100), sort: initial column key,
  //            filter: (row, text) => bool, called for every row with the
  //            search box's text in lower case ("" when empty),
  //            every: least ms between renders (200) }
  //
  // put(row) / remove(key) / clear() change the rows and schedule one
  // render; now() renders at once (after a filter outside the table
  // changed, say).
  class Table {
    constructor(el, columns, options) {
      this.el = el; this.columns = columns; this.options = options;
      this.rows = new Map(); this.page = 0; this.size = options.pageSize || 100;
      this.sortKey = options.sort || columns[0].key; this.desc = false;
      this.text = ""; this.every = options.every ?? 200; this.timer = null; this.last = 0;
      this.renders = 0;
      el.innerHTML = `<div class="toolbar"></div><table><thead><tr>${columns.map((c) =>
        `<th class="sortable${c.num ? " num" : ""}" data-key="${esc(c.key)}">${esc(c.title)}</th>`).join("")}</tr></thead><tbody></tbody></table>`;
      this.tbody = el.querySelector("tbody");
      this.bar = el.querySelector(".toolbar");
      this.bar.innerHTML = `<input type="search" placeholder="filter (any column)"> ` +
        `<button data-go="first">&laquo;</button><button data-go="prev">&lsaquo;</button>` +
        `<span class="count muted"></span><button data-go="next">&rsaquo;</button><button data-go="last">&raquo;</button>`;
      this.countEl = this.bar.querySelector(".count");
      this.bar.querySelector("input").addEventListener("input", (e) => {
        this.text = e.target.value.trim().toLowerCase(); this.page = 0; this.now();
      });
      this.bar.addEventListener("click", (e) => {
        const go = e.target.dataset && e.target.dataset.go;
        if (!go) return;
        const pages = Math.max(1, Math.ceil(this.visible / this.size));
        this.page = { first: 0, prev: this.page - 1, next: this.page + 1, last: pages - 1 }[go];
        this.page = Math.min(Math.max(this.page, 0), pages - 1); this.now();
      });
      el.querySelector("thead").addEventListener("click", (e) => {
        const key = e.target.dataset && e.target.dataset.key;
        if (!key) return;
        this.desc = key === this.sortKey ? !this.desc : false; this.sortKey = key; this.now();
      });
      this.visible = 0;
    }
    put(row) { this.rows.set(this.options.key(row), row); this.schedule(); }
    remove(key) { this.rows.delete(key); this.schedule(); }
    clear() { this.rows.clear(); this.schedule(); }
    schedule() {
      if (this.timer) return;
      const wait = Math.max(0, this.last + this.every - Date.now());
      this.timer = setTimeout(() => { this.timer = null; this.render(); }, wait);
    }
    now() { if (this.timer) { clearTimeout(this.timer); this.timer = null; } this.render(); }
    render() {
      this.last = Date.now(); this.renders++;
      const column = this.columns.find((c) => c.key === this.sortKey) || this.columns[0];
      const text = this.text, filter = this.options.filter;
      let rows = [...this.rows.values()];
      if (filter) rows = rows.filter((r) => filter(r, text));
      const value = column.value, sign = this.desc ? -1 : 1;
      const keyed = rows.map((r) => [value(r), r]);
      keyed.sort((a, b) => {
        const x = a[0], y = b[0];
        if (x === y) return 0;
        if (x == null || x === "") return 1;
        if (y == null || y === "") return -1;
        return (x < y ? -1 : 1) * sign;
      });
      this.visible = keyed.length;
      const pages = Math.max(1, Math.ceil(keyed.length / this.size));
      if (this.page >= pages) this.page = pages - 1;
      const start = this.page * this.size, end = Math.min(start + this.size, keyed.length);
      this.tbody.innerHTML = keyed.slice(start, end).map(([, r]) => `<tr data-key="${esc(this.options.key(r))}">${
        this.columns.map((c) => `<td${c.num ? ' class="num"' : ""}>${c.html(r)}</td>`).join("")}</tr>`).join("");
      for (const th of this.el.querySelectorAll("th")) {
        th.classList.toggle("sorted-asc", th.dataset.key === this.sortKey && !this.desc);
        th.classList.toggle("sorted-desc", th.dataset.key === this.sortKey && this.desc);
      }
      const of = keyed.length !== this.rows.size ? `${keyed.length} matching of ${this.rows.size}` : `${this.rows.size}`;
      this.countEl.textContent = keyed.length ? `${start + 1}\u2013${end} of ${of}` : `none of ${this.rows.size}`;
    }
  }

  return { esc, ago, ms, bytes, live, Table };
})();

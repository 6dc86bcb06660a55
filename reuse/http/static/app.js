// reuse dashboard: charts (Chart.js, vendored), the "try it" panel, job progress, the model filter.
// Data comes from <script type="application/json"> blocks the server rendered; text from the server is
// set with textContent, never as HTML.
(function () {
  "use strict";
  const PALETTE = ["#2456a6", "#c2410c", "#2e7d32", "#8a4fbf", "#b3261e", "#0f766e", "#9a6700", "#475569"];

  function data(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // Vertical dashed lines where a new segment of training starts (a fine-tune after a train).
  const segmentLines = {
    id: "segmentLines",
    afterDatasetsDraw(chart, args, opts) {
      const x = chart.scales.x, area = chart.chartArea, ctx = chart.ctx;
      (opts.starts || []).forEach(function (s, i) {
        if (i === 0) return;
        const px = x.getPixelForValue(s.epoch - 1);
        ctx.save();
        ctx.strokeStyle = "#94a3b8";
        ctx.setLineDash([4, 4]);
        ctx.beginPath(); ctx.moveTo(px, area.top); ctx.lineTo(px, area.bottom); ctx.stroke();
        ctx.fillStyle = "#5d6778"; ctx.font = "11px system-ui";
        ctx.fillText(s.label, px + 4, area.top + 12);
        ctx.restore();
      });
    }
  };

  // Error bars (one standard deviation) under the advisor's points.
  const errorBars = {
    id: "errorBars",
    afterDatasetsDraw(chart) {
      const ctx = chart.ctx, y = chart.scales.y;
      chart.data.datasets.forEach(function (ds, i) {
        const meta = chart.getDatasetMeta(i);
        if (meta.hidden) return;
        meta.data.forEach(function (pt, j) {
          const p = ds.data[j];
          if (!p || !p.std) return;
          ctx.save();
          ctx.strokeStyle = ds.borderColor;
          ctx.beginPath();
          ctx.moveTo(pt.x, y.getPixelForValue(p.y - p.std));
          ctx.lineTo(pt.x, y.getPixelForValue(p.y + p.std));
          [p.y - p.std, p.y + p.std].forEach(function (v) {  // the caps
            ctx.moveTo(pt.x - 4, y.getPixelForValue(v));
            ctx.lineTo(pt.x + 4, y.getPixelForValue(v));
          });
          ctx.stroke();
          ctx.restore();
        });
      });
    }
  };

  function curvesChart(canvas, d) {
    const hasMetric = d.series.some(function (s) { return s.axis === "metric"; });
    const datasets = d.series.map(function (s, i) {
      return {
        label: s.key, data: s.values, yAxisID: s.axis === "loss" ? "y" : "y1",
        borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
        borderDash: s.key.indexOf("val_") === 0 ? [6, 3] : [], pointRadius: 0, borderWidth: 1.6,
        spanGaps: false
      };
    });
    return new Chart(canvas, {
      type: "line",
      data: { labels: d.epochs, datasets: datasets },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        scales: {
          x: { title: { display: true, text: "epoch" }, ticks: { maxTicksLimit: 20 } },
          // From 0, as the PNG plots draw it: a flat loss looks flat, not like noise magnified.
          y: { position: "left", beginAtZero: true, title: { display: true, text: "loss" } },
          y1: { display: hasMetric, position: "right", title: { display: true, text: "metric" },
                grid: { drawOnChartArea: false },
                min: d.metric_min === null ? undefined : d.metric_min,
                max: d.metric_min === null ? undefined : 1 }
        },
        plugins: { segmentLines: { starts: d.segments } }
      },
      plugins: [segmentLines]
    });
  }

  function adviceChart(canvas, d) {
    const all = [].concat.apply([], d.series.map(function (s) { return s.points; }));
    const lo = Math.min.apply(null, all.map(function (p) { return p.y - (p.std || 0); }));
    const hi = Math.max.apply(null, all.map(function (p) { return p.y + (p.std || 0); }));
    const depths = all.map(function (p) { return p.x; });
    const pad = (hi - lo) * 0.08 || 0.05;
    const datasets = d.series.map(function (s, i) {
      return { label: s.label, data: s.points, showLine: s.label !== "scratch", borderColor: PALETTE[i],
               backgroundColor: PALETTE[i], pointRadius: 4 };
    });
    const scratch = d.series.find(function (s) { return s.label === "scratch"; });
    if (scratch && scratch.points.length) {  // training from scratch: what every candidate is held to
      const y = scratch.points[0].y;
      datasets.push({ label: "scratch (reference)", data: [{ x: Math.min.apply(null, depths) - 0.5, y: y },
                      { x: Math.max.apply(null, depths) + 0.5, y: y }], showLine: true, pointRadius: 0,
                      borderDash: [6, 4], borderColor: "#94a3b8", borderWidth: 1 });
    }
    return new Chart(canvas, {
      type: "scatter",
      data: { datasets: datasets },
      options: {
        animation: false, maintainAspectRatio: false,
        scales: { x: { min: Math.min.apply(null, depths) - 0.5, max: Math.max.apply(null, depths) + 0.5,
                       title: { display: true, text: "reused layers (depth)" },
                       ticks: { stepSize: 1, callback: function (v) { return Number.isInteger(v) ? v : ""; } }
                     },
                  y: { suggestedMin: lo - pad, suggestedMax: hi + pad,
                       title: { display: true, text: d.metric + " (validation)" } } },
        plugins: { tooltip: { callbacks: { label: function (c) {
          const p = c.raw; return (p.label || c.dataset.label) + ": " + p.y.toFixed(4) +
                                 (p.std !== undefined ? " ± " + p.std.toFixed(4) : "");
        } } } }
      },
      plugins: [errorBars]
    });
  }

  function charts() {
    if (typeof Chart === "undefined") return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const d = data(canvas.dataset.src);
      if (!d) return;
      canvas.chart = canvas.dataset.chart === "curves" ? curvesChart(canvas, d) : adviceChart(canvas, d);
      canvas.dataset.drawn = "true";
    });
  }

  // -- try it --------------------------------------------------------------------------------------
  function prod(xs) { return xs.reduce(function (a, b) { return a * b; }, 1); }

  function numbers(text) {
    return text.trim().split(/[\s,;]+/).filter(function (t) { return t.length; }).map(Number);
  }

  function inputField(t) {
    const row = t.shape.slice(1), perRow = prod(row.map(function (d) { return d < 0 ? 1 : d; }));
    const box = el("div");
    box.dataset.name = t.name;
    const label = el("label", t.name + " (" + t.datatype + ", one row: " + JSON.stringify(row) + ", " +
                     perRow + " values)");
    const area = el("textarea");
    area.name = t.name;
    area.placeholder = perRow + " numbers per line, separated by commas or spaces; one line per row";
    area.id = "try-input-" + t.name;
    box.append(label, area);
    if (row.length >= 2 || t.datatype === "BYTES") {
      const file = el("input");
      file.type = "file"; file.accept = "image/*"; file.id = "try-image-" + t.name;
      box.append(el("div", "or an image file (sent as BYTES: the server decodes it where the model takes " +
                     "images)", "muted"), file);
    }
    return box;
  }

  async function buildRequest(meta, form) {
    const inputs = [], blobs = [];
    for (const t of meta.inputs) {
      const file = form.querySelector("#try-image-" + CSS.escape(t.name));
      if (file && file.files && file.files.length) {
        const bytes = new Uint8Array(await file.files[0].arrayBuffer());
        const blob = new Uint8Array(4 + bytes.length);
        new DataView(blob.buffer).setUint32(0, bytes.length, true);
        blob.set(bytes, 4);
        blobs.push(blob);
        inputs.push({ name: t.name, datatype: "BYTES", shape: [1],
                      parameters: { binary_data_size: blob.length } });
        continue;
      }
      const values = numbers(form.querySelector("#try-input-" + CSS.escape(t.name)).value);
      const row = t.shape.slice(1);
      const perRow = prod(row.map(function (d) { return d < 0 ? 1 : d; }));
      const rows = Math.max(1, Math.ceil(values.length / perRow));
      const dims = row.map(function (d) { return d < 0 ? 1 : d; });
      inputs.push({ name: t.name, datatype: t.datatype, shape: [rows].concat(dims), data: values });
    }
    const head = new TextEncoder().encode(JSON.stringify({ inputs: inputs }));
    if (!blobs.length) return { body: head, headers: { "Content-Type": "application/json" } };
    const size = head.length + blobs.reduce(function (a, b) { return a + b.length; }, 0);
    const body = new Uint8Array(size);
    let at = 0;
    [head].concat(blobs).forEach(function (part) { body.set(part, at); at += part.length; });
    return { body: body, headers: { "Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": String(head.length) } };
  }

  function showAnswer(target, answer, classes) {
    target.replaceChildren();
    target.append(el("h3", "Answer of " + answer.model_name + ":" + answer.model_version));
    answer.outputs.forEach(function (o) {
      target.append(el("p", o.name + " " + o.datatype + " " + JSON.stringify(o.shape)));
      const k = o.shape[o.shape.length - 1], rows = o.shape.length === 2 ? o.shape[0] : 0;
      if (rows && k > 1 && k <= 100000) {
        const table = el("table", null, "grid narrow");
        table.id = "try-output-" + o.name;
        const head = el("tr");
        ["row", "class", "name", "value"].forEach(function (h) { head.append(el("th", h)); });
        table.append(head);
        for (let r = 0; r < Math.min(rows, 20); r++) {
          const vals = o.data.slice(r * k, (r + 1) * k).map(function (v, i) { return [v, i]; });
          vals.sort(function (a, b) { return b[0] - a[0]; });
          vals.slice(0, 5).forEach(function (p, n) {
            const tr = el("tr");
            [n === 0 ? r : "", p[1], classes[p[1]] !== undefined ? classes[p[1]] : "", p[0].toPrecision(6)]
              .forEach(function (c) { tr.append(el("td", c)); });
            table.append(tr);
          });
        }
        target.append(table);
      }
    });
    const raw = el("pre", JSON.stringify(answer));
    raw.id = "try-raw";
    target.append(el("p", "The whole answer:", "muted"), raw);
  }

  function tryPanel() {
    const panel = document.getElementById("try-panel");
    if (!panel) return;
    const base = "/v2/models/" + encodeURIComponent(panel.dataset.model) + "/versions/" +
                 encodeURIComponent(panel.dataset.version);
    const metaBox = document.getElementById("try-meta"), form = document.getElementById("try-form");
    const result = document.getElementById("try-result"), classes = data("try-classes") || [];
    let meta = null;
    panel.addEventListener("toggle", async function () {
      if (!panel.open || meta) return;
      const r = await fetch(base, { headers: { Accept: "application/json" } });
      const body = await r.json();
      if (!r.ok) { metaBox.textContent = "Cannot load the model: " + (body.error || r.status); return; }
      meta = body;
      metaBox.textContent = "Inputs: " + meta.inputs.map(function (t) {
        return t.name + " " + t.datatype + " " + JSON.stringify(t.shape);
      }).join(", ") + "; outputs: " + meta.outputs.map(function (t) {
        return t.name + " " + t.datatype + " " + JSON.stringify(t.shape);
      }).join(", ") + "; runtime: " + ((meta.parameters || {}).runtime || "?");
      const holder = document.getElementById("try-inputs");
      holder.replaceChildren.apply(holder, meta.inputs.map(inputField));
      form.hidden = false;
    });
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      result.replaceChildren(el("p", "Running…", "muted"));
      try {
        const req = await buildRequest(meta, form);
        const r = await fetch(base + "/infer", { method: "POST", headers: req.headers, body: req.body });
        const answer = await r.json();
        if (!r.ok) {
          const e = el("p", "HTTP " + r.status + ": " + answer.error, "error");
          e.id = "try-error";
          result.replaceChildren(e);
          return;
        }
        showAnswer(result, answer, classes);
      } catch (err) {
        result.replaceChildren(el("p", String(err), "error"));
      }
    });
  }

  // -- jobs ----------------------------------------------------------------------------------------
  function jobRow(j) {
    const tr = el("tr");
    tr.dataset.id = j.id;
    const id = el("td"); id.append(el("code", j.id));
    const state = el("td"); state.append(el("span", j.state, "state " + j.state));
    const prog = el("td");
    if (j.progress) {
      const bar = el("progress"); bar.max = j.progress.of; bar.value = j.progress.done;
      prog.append(bar, document.createTextNode(" " + j.progress.done + "/" + j.progress.of +
        (j.progress.eta_s !== null && j.state === "running" ? " · eta " + Math.round(j.progress.eta_s) + " s"
                                                            : "")));
    } else { prog.textContent = "-"; }
    const model = el("td");
    if (j.model) {
      const a = el("a", j.model), cut = j.model.lastIndexOf(":");
      a.href = "/ui/models/" + encodeURIComponent(j.model.slice(0, cut)) + "/versions/" +
               encodeURIComponent(j.model.slice(cut + 1));
      model.append(a);
    } else { model.textContent = "-"; }
    const created = el("td", (j.created || "").slice(0, 19).replace("T", " "));
    tr.append(id, el("td", j.kind), state, created, prog, model, el("td", (j.error || "").slice(0, 200)));
    return tr;
  }

  function jobs() {
    const body = document.getElementById("jobs-body");
    if (!body) return;
    async function poll() {
      const active = body.querySelector(".state.running, .state.queued");
      if (active) {
        const r = await fetch("/ui/api/jobs", { headers: { Accept: "application/json" } });
        if (r.ok) {
          const d = await r.json();
          body.replaceChildren.apply(body, d.jobs.map(jobRow));
        }
      }
      setTimeout(poll, 2000);
    }
    setTimeout(poll, 2000);
  }

  // -- the model list filters as you type (the search form works without script) ---------------------
  function filter() {
    const table = document.getElementById("models"), box = document.querySelector("header .search input");
    if (!table || !box) return;
    box.addEventListener("input", function () {
      const q = box.value.trim().toLowerCase();
      table.querySelectorAll("tbody tr").forEach(function (tr) {
        tr.hidden = q !== "" && tr.dataset.search.indexOf(q) < 0;
      });
    });
  }

  charts(); tryPanel(); jobs(); filter();
})();

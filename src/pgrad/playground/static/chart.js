// Small SVG charts for the playground: line charts (one or more series) and the estimator's
// bar chart. No library: each draw clears the <svg> and rebuilds it from the data.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MARGIN = { left: 56, right: 12, top: 10, bottom: 40 };

function el(name, attrs, parent, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e6 && Number.isInteger(v)) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3 && Number.isInteger(v)) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 1e4 || a < 1e-2) return v.toExponential(0).replace("e+", "e");
  return String(+v.toPrecision(3));
}

// About five round numbers spanning [lo, hi].
function ticks(lo, hi) {
  const raw = (hi - lo) / 5;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
  return out;
}

function extent(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  return [lo, hi];
}

function frame(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const w = svg.clientWidth || 400, h = svg.clientHeight || 200;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  return { w, h, iw: w - MARGIN.left - MARGIN.right, ih: h - MARGIN.top - MARGIN.bottom };
}

function empty(svg, note) {
  const { w, h } = frame(svg);
  el("text", { x: w / 2, y: h / 2, class: "empty", "text-anchor": "middle" }, svg, note);
  svg.dataset.points = "0";
  svg.dataset.series = "0";
}

// series: [{label, color, points: [[x, y], ...]}]; opts: {xLabel, logY, note}.
// Sets data-points (points of the first series) and data-series (series with points).
function lineChart(svg, series, opts = {}) {
  const shown = series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p[1])
    && (!opts.logY || p[1] > 0)) })).filter((s) => s.points.length);
  if (!shown.length) return empty(svg, opts.note || "waiting for data");
  const { w, h, iw, ih } = frame(svg);
  const ys = shown.flatMap((s) => s.points.map((p) => (opts.logY ? Math.log10(p[1]) : p[1])));
  const [x0, x1] = extent([0, ...shown.flatMap((s) => s.points.map((p) => p[0]))]);
  const [y0, y1] = extent(ys);
  const X = (x) => MARGIN.left + ((x - x0) / (x1 - x0)) * iw;
  const Y = (y) => MARGIN.top + ih - (((opts.logY ? Math.log10(y) : y) - y0) / (y1 - y0)) * ih;
  const grid = el("g", { class: "grid" }, svg);
  for (const t of ticks(y0, y1)) {
    const y = MARGIN.top + ih - ((t - y0) / (y1 - y0)) * ih;
    el("line", { x1: MARGIN.left, x2: w - MARGIN.right, y1: y, y2: y }, grid);
    el("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, grid,
      opts.logY ? fmt(Math.pow(10, t)) : fmt(t));
  }
  for (const t of ticks(x0, x1)) {
    el("text", { x: X(t), y: h - 24, "text-anchor": "middle" }, grid, fmt(t));
  }
  el("text", { x: w - MARGIN.right, y: h - 6, "text-anchor": "end", class: "axis-label" },
    grid, opts.xLabel || "env steps");
  for (const s of shown) {
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`);
    el("path", { d: d.join(""), stroke: s.color, class: "line" }, svg);
  }
  if (shown.length > 1 || shown[0].label) {
    const legend = el("g", { class: "legend" }, svg);
    shown.forEach((s, i) => {
      const y = MARGIN.top + 10 + i * 16;
      el("rect", { x: MARGIN.left + 10, y: y - 8, width: 14, height: 4, fill: s.color }, legend);
      el("text", { x: MARGIN.left + 30, y: y - 2 }, legend, s.label);
    });
  }
  svg.dataset.points = String(series[0] ? series[0].points.length : 0);
  svg.dataset.series = String(shown.length);
}

// rows: [{estimator, variance, variance_vs_reinforce, bias, noise_floor}]: one bar each, the
// variance on a log scale, with its ratio to REINFORCE's and the bias beside it.
function estimatorChart(svg, rows) {
  if (!rows.length) return empty(svg, "press the button: the lab samples episodes at the "
    + "latest checkpoint and measures each estimator");
  const { w } = frame(svg);
  const barH = 22, left = 150, right = 250;
  svg.setAttribute("viewBox", `0 0 ${w} ${rows.length * barH + 24}`);
  svg.style.height = `${rows.length * barH + 24}px`;
  const logs = rows.map((r) => Math.log10(r.variance));
  const lo = Math.min(...logs) - 0.3, hi = Math.max(...logs);
  const width = (v) => 4 + ((Math.log10(v) - lo) / (hi - lo)) * (w - left - right);
  el("text", { x: left, y: 12, class: "axis-label" }, svg, "variance of one episode's gradient "
    + "(tr Cov, log scale)");
  rows.forEach((r, i) => {
    const y = 20 + i * barH;
    el("text", { x: left - 8, y: y + 14, "text-anchor": "end" }, svg, NAMES[r.estimator]
      || r.estimator);
    el("rect", { x: left, y: y + 3, width: width(r.variance), height: barH - 8,
      class: r.estimator.startsWith("GAE") ? "bar gae" : "bar" }, svg);
    el("text", { x: left + width(r.variance) + 6, y: y + 14, class: "bar-note" }, svg,
      `${fmt(r.variance_vs_reinforce)}x REINFORCE; bias ${fmt(r.bias)} (noise ${fmt(r.noise_floor)})`);
  });
  svg.dataset.points = String(rows.length);
}

const NAMES = {
  "total return": "REINFORCE, G_0",
  "reward-to-go": "REINFORCE, G_t",
  "reward-to-go - V": "baseline, G_t - V",
  "TD(0)": "TD(0)",
};

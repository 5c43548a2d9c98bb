// The playground page: the form, the runs of this tab, and their live event streams.
// One EventSource per run (/api/runs/ID/events); the server stops a run whose last stream
// closes, so closing the tab ends its runs.
"use strict";

const COLORS = ["#2a6f97", "#e76f51", "#2a9d8f", "#8338ec", "#e9a03b", "#264653"];
const $ = (id) => document.getElementById(id);
const runs = new Map(); // id -> {id, label, color, env, algo, rows, warnings, state, pid, ...}
let menu = null, focus = null, drawPending = false;

// ---- the form -------------------------------------------------------------------------

async function init() {
  menu = await (await fetch("/api/choices")).json();
  for (const e of menu.envs) $("env").add(new Option(e.label, e.key));
  for (const a of menu.algos) $("algo").add(new Option(a.label, a.key));
  for (const k of menu.knobs) $("knobs").appendChild(knobRow(k));
  $("env").onchange = $("algo").onchange = refreshForm;
  $("k-baseline").onchange = () => {
    if (!$("k-baseline").disabled) {
      $("algo").value = $("k-baseline").checked ? "reinforce_baseline" : "reinforce";
      refreshForm();
    }
  };
  $("run-form").onsubmit = (ev) => { ev.preventDefault(); start(); };
  $("pause").onclick = togglePause;
  $("stop").onclick = () => focus && post(`/api/runs/${focus}/stop`);
  $("measure").onclick = measure;
  refreshForm();
  redraw();
  pollCapacity();
  setInterval(pollCapacity, 2000);
}

function knobRow(k) {
  const row = document.createElement("div");
  row.className = "knob";
  row.dataset.key = k.key;
  const input = k.kind === "bool"
    ? `<input id="k-${k.key}" type="checkbox">`
    : `<input id="k-${k.key}" type="number" step="any">`;
  const slider = k.kind === "bool" ? "" : `<input id="r-${k.key}" type="range" step="0.01"
    min="${k.log ? Math.log10(k.low) : k.low}" max="${k.log ? Math.log10(k.high) : k.high}">`;
  row.innerHTML = `<div class="knob-head"><label for="k-${k.key}">${k.label}</label>${input}</div>
    ${slider}<p class="hint">${k.explain}</p>`;
  if (k.kind !== "bool") {
    const box = row.querySelector(`#k-${k.key}`), range = row.querySelector(`#r-${k.key}`);
    const fromRange = (v) => (k.log ? Math.pow(10, v) : v);
    range.oninput = () => {
      const v = fromRange(Number(range.value));
      box.value = k.kind === "int" ? Math.round(v) : +v.toPrecision(3);
    };
    box.oninput = () => {
      const v = Number(box.value);
      if (Number.isFinite(v) && (!k.log || v > 0)) range.value = k.log ? Math.log10(v) : v;
    };
  }
  return row;
}

function knobsOf(algo, env) {
  return env === menu.rps.env ? menu.rps.knobs : menu.algos.find((a) => a.key === algo).knobs;
}

// Which algorithms fit the env, which knobs the algorithm has, and their defaults there.
function refreshForm() {
  const env = $("env").value, info = menu.envs.find((e) => e.key === env);
  $("env-about").textContent = info.about;
  for (const opt of $("algo").options) {
    const a = menu.algos.find((x) => x.key === opt.value);
    opt.disabled = env === menu.rps.env ? !menu.rps.algos.includes(a.key)
      : a.continuous_only && !info.continuous;
  }
  if ($("algo").selectedOptions[0].disabled) $("algo").value = "reinforce";
  const algo = $("algo").value, defaults = menu.defaults[algo][env], active = knobsOf(algo, env);
  for (const k of menu.knobs) {
    const row = document.querySelector(`.knob[data-key="${k.key}"]`);
    const on = active.includes(k.key);
    row.classList.toggle("off", !on);
    row.classList.remove("bad");
    row.querySelectorAll("input").forEach((i) => { i.disabled = !on; });
    const box = $(`k-${k.key}`);
    if (k.kind === "bool") box.checked = !!defaults[k.key];
    else if (on) { box.value = defaults[k.key]; box.oninput(); }
  }
  $("steps").value = defaults.steps;
  $("seed").value = defaults.seed;
  showError(null);
}

function formBody() {
  const env = $("env").value, algo = $("algo").value;
  const body = { env, algo, steps: Number($("steps").value), seed: Number($("seed").value) };
  for (const key of knobsOf(algo, env)) {
    const k = menu.knobs.find((x) => x.key === key), box = $(`k-${key}`);
    if (key === "baseline") continue; // carried by the algorithm's name
    if (k.kind === "bool") body[key] = box.checked;
    else if (box.value !== "") body[key] = Number(box.value);
  }
  return body;
}

function showError(message, field) {
  $("form-error").hidden = !message;
  $("form-error").textContent = message || "";
  document.querySelectorAll(".knob.bad").forEach((r) => r.classList.remove("bad"));
  const row = field && document.querySelector(`.knob[data-key="${field}"]`);
  if (row) row.classList.add("bad");
}

async function post(url, body) {
  const init = { method: "POST", headers: { "Content-Type": "application/json" } };
  if (body) init.body = JSON.stringify(body);
  const response = await fetch(url, init);
  let data = {};
  try { data = await response.json(); } catch (e) { /* no body */ }
  return { status: response.status, data };
}

async function start() {
  const { status, data } = await post("/api/runs", formBody());
  if (status === 429) return showError(`The server is at its limit: ${data.detail}`);
  if (status !== 201) return showError(data.detail || `error ${status}`, data.field);
  showError(null);
  const run = { ...data, color: COLORS[runs.size % COLORS.length], rows: [], warnings: [],
    frame: null, measure: null, compare: true };
  runs.set(run.id, run);
  watch(run);
  setFocus(run.id);
  pollCapacity();
}

// ---- runs and their streams -----------------------------------------------------------

function watch(run) {
  const source = new EventSource(`/api/runs/${run.id}/events`);
  run.source = source;
  source.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "row") run.rows.push(ev);
    else if (ev.type === "frame") run.frame = ev;
    else if (ev.type === "warning") run.warnings.push(ev);
    else if (ev.type === "status") {
      run.state = ev.state;
      if (ev.pid) run.pid = ev.pid;
      if (ev.message) run.message = ev.message;
      if (ev.summary) run.summary = ev.summary;
    } else if (ev.type === "measuring") run.measure = { pending: ev.checkpoint };
    else if (ev.type === "measure") run.measure = ev;
    else if (ev.type === "end") run.ended = true;
    if (run.ended && !(run.measure && run.measure.pending)) source.close(); // a result may follow
    if (ev.type === "end") pollCapacity();
    if (ev.type === "frame" && run.id === focus) drawFrame(run);
    else schedule();
  };
}

function setFocus(id) {
  focus = id;
  redraw();
  const run = runs.get(id);
  if (run && run.frame) drawFrame(run);
}

async function togglePause() {
  const run = runs.get(focus);
  if (run) await post(`/api/runs/${run.id}/${run.state === "paused" ? "resume" : "pause"}`);
}

async function measure() {
  const run = runs.get(focus);
  const { status, data } = await post(`/api/runs/${run.id}/measure`);
  if (status !== 200) run.measure = { error: data.detail };
  if (status === 200 && run.source.readyState === EventSource.CLOSED) {
    Object.assign(run, { rows: [], warnings: [], ended: false }); // the stream replays them
    watch(run);
  }
}

async function pollCapacity() {
  try {
    const data = await (await fetch("/api/runs")).json();
    $("capacity").textContent = `${data.live} of ${data.max_runs} runs training`;
    $("capacity").classList.toggle("full", data.live >= data.max_runs);
  } catch (e) { $("capacity").textContent = "server unreachable"; }
}

// ---- drawing --------------------------------------------------------------------------

function schedule() {
  if (!drawPending) { drawPending = true; requestAnimationFrame(redraw); }
}

const series = (run, key, label, color) => ({
  label, color: color || run.color, points: run.rows.map((r) => [r.step, r[key]]),
});

function redraw() {
  drawPending = false;
  drawRunList();
  const run = runs.get(focus);
  const live = run && ["starting", "running", "paused"].includes(run.state);
  $("pause").disabled = $("stop").disabled = !live;
  $("pause").textContent = run && run.state === "paused" ? "Resume" : "Pause";
  $("measure").disabled = !run || run.env === menu.rps.env;
  $("run-title").textContent = run ? `${run.label}: ${run.state}${run.message ? ` (${run.message})` : ""}` : "start a run";
  const xLabel = run && run.env === menu.rps.env ? "rounds" : "env steps";
  lineChart($("return-chart"), run ? [series(run, "episode_return", "")] : [], { xLabel });
  lineChart($("entropy-chart"), run ? [series(run, "entropy", "")] : [], { xLabel });
  const critic = run && run.rows.some((r) => r.value_loss); // REINFORCE logs a value loss of 0
  lineChart($("value-chart"), critic ? [series(run, "value_loss", "")] : [],
    { xLabel, note: run ? "no critic in this run" : "waiting for data" });
  lineChart($("ppo-chart"), run ? [series(run, "approx_kl", "approx-KL", "#2a6f97"),
    series(run, "clip_fraction", "clip fraction", "#e76f51")] : [],
  { xLabel, note: "PPO runs only" });
  drawWarnings(run);
  drawEstimator(run);
  const compared = [...runs.values()].filter((r) => r.compare);
  lineChart($("compare-chart"), compared.map((r) => series(r, "episode_return", r.label)),
    { note: "tick two or more runs to overlay their returns" });
}

function drawRunList() {
  const list = $("runs");
  list.replaceChildren(...[...runs.values()].reverse().map((run) => {
    const item = document.createElement("li");
    item.className = run.id === focus ? "focus" : "";
    item.dataset.id = run.id;
    item.dataset.pid = run.pid || "";
    item.dataset.state = run.state;
    const last = run.rows.length ? run.rows[run.rows.length - 1] : null;
    const done = ["finished", "stopped", "error"].includes(run.state);
    const download = done && run.env !== menu.rps.env
      ? `<a href="/api/runs/${run.id}/download" download>download</a>` : "";
    item.innerHTML = `<input type="checkbox" class="compare" ${run.compare ? "checked" : ""}
      title="compare"><span class="swatch" style="background:${run.color}"></span>
      <span class="name">${run.label}</span><span class="state ${run.state}">${run.state}</span>
      <span class="meta">${last ? `step ${last.step.toLocaleString()}` : ""} ${download}</span>`;
    item.querySelector(".compare").onchange = (ev) => { run.compare = ev.target.checked; schedule(); };
    item.onclick = (ev) => { if (ev.target.tagName !== "INPUT" && ev.target.tagName !== "A") setFocus(run.id); };
    return item;
  }));
}

function drawFrame(run) {
  const f = run.frame;
  $("frame").hidden = !f.png;
  if (f.png) $("frame").src = `data:image/png;base64,${f.png}`;
  $("scene").textContent = f.scene || "";
  $("frame-caption").textContent = f.episode !== undefined && !f.scene
    ? `episode ${f.episode + 1}${f.return !== undefined ? `, return so far ${+f.return.toFixed(1)}` : ""}` : "";
  const env = menu.envs.find((e) => e.key === run.env);
  const box = $("policy");
  if (f.probs) {
    $("policy-title").textContent = "Action probabilities at this state";
    box.dataset.probs = JSON.stringify(f.probs);
    box.replaceChildren(...f.probs.map((p, i) => bar(env.actions[i], p, `${(100 * p).toFixed(1)}%`,
      0, p * 100)));
  } else if (f.mean) {
    $("policy-title").textContent = `Action: mean ± std${f.squashed ? " (tanh-squashed)" : ""}`;
    box.dataset.mean = JSON.stringify(f.mean);
    box.replaceChildren(...f.mean.map((m, i) => {
      const s = f.std[i], lo = -2, hi = 2; // Pendulum's torque range
      const pct = (v) => Math.min(100, Math.max(0, ((v - lo) / (hi - lo)) * 100));
      return bar(env.actions[i], m, `${m.toFixed(2)} ± ${s.toFixed(2)}`, pct(m - s), pct(m + s));
    }));
  }
}

function bar(name, value, text, from, to) {
  const row = document.createElement("div");
  row.className = "prob";
  row.innerHTML = `<span class="name">${name}</span><span class="track"><span class="fill"
    style="left:${from}%;width:${Math.max(to - from, 0.5)}%"></span></span><span class="val">${text}</span>`;
  return row;
}

function drawWarnings(run) {
  const list = $("warnings");
  if (!run || !run.warnings.length) {
    list.innerHTML = `<li class="quiet">No warnings${run ? " so far" : ""}: entropy collapse, value
      explosion and falling returns show here as they happen.</li>`;
    return;
  }
  list.replaceChildren(...run.warnings.map((w) => {
    const item = document.createElement("li");
    item.textContent = `step ${w.step.toLocaleString()}: ${w.message}`;
    return item;
  }));
}

function drawEstimator(run) {
  const m = run && run.measure;
  if (m && m.pending) $("measure-note").textContent = `measuring at ${m.pending} in the background…`;
  else if (m && m.error) $("measure-note").textContent = m.error;
  else if (m && m.info) $("measure-note").textContent = `${m.info.episodes} episodes of mean length `
    + `${m.info.mean_length.toFixed(0)}; critic: ${m.info.critic}`;
  else $("measure-note").textContent = "";
  estimatorChart($("estimator-chart"), m && m.rows ? m.rows : []);
}

window.addEventListener("resize", schedule);
init();

// The Live Systems page: everything it shows is pushed by the director over one websocket.
// No polling: the whole show arrives once on connect ("status" and "log"), then only what
// changed ("update": changed client rows, new events, figures that moved). Built for 500
// clients: the table keeps only the rows in view in the document (virtualised), problems
// first, with search, filters and grouping by backup. When the director goes away the page
// says so, greys out what it can no longer vouch for, and reconnects by itself.
"use strict";

const HISTORY = 60; // sparkline samples per figure (30 s at two a second)
const SAMPLE_MS = 500;
const EVENTS_KEPT = 500;
const ALARM_KINDS = new Set(["alarm", "backup.failed", "action.failed"]);

// What needs every operator: alarms, and the failures nobody was told of. An operator's own
// refused command (a takeover refused, an action that failed from OSC, the CLI or this page)
// was answered to whoever sent it: it is in the event log, not in the red band.
function isAlarm(event) {
  if (event.kind === "alarm") return true;
  if (event.kind === "backup.failed") return event.trigger === "auto" || event.trigger === undefined;
  if (event.kind === "action.failed") return event.on !== ""; // from a mapping (older: no field)
  return false;
}
const RETRY_MS = [250, 500, 1000, 2000]; // then every 2 s until the director is back
const ROW_HEIGHT = 56; // px, fixed: the table is virtualised (see style.css)
const GROUP_HEIGHT = 30;
const OVERSCAN = 6; // rows drawn beyond each edge of the view
const NAMES_SHOWN = 6; // names listed in an aggregated alarm before "and N more"
const TOGETHER_S = 1.0; // alarms of one kind this close together are shown as one
const FRESH_MS = 1200; // new events are marked this long (a class, not an animation: see setText)

const $ = (selector, root = document) => root.querySelector(selector);

// The page's steady work in the browser is what it changes in the document, so it changes
// only what differs: writing the same text again still costs a layout. For the same reason
// nothing animates on the main thread (no CSS transitions or animations of paint, see
// docs/web.md): every frame of one was a repaint.
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

const page = {
  socket: null,
  live: false,
  refused: "",
  retries: 0,
  status: null, // { file, epoch, modules }: the show-level part
  clients: new Map(), // client name → its row (ClientStatus), as last sent
  order: new Map(), // client name → its place in the show
  figures: new Map(), // client name → { cpu, memory, gpu, fps }
  history: new Map(), // client name → { cpu: [], memory: [], gpu: [], fps: [] }
  view: [], // what the table shows, in order: client names and { group } headings
  rows: new Map(), // client name → its table row, only for rows in the document
  drawn: new Map(), // client name → the row data it was drawn from
  layoutDue: false,
  drawDue: false,
  alarms: [], // alarm-kind events, oldest first
  acknowledged: { seq: 0, by: "", at: 0 }, // the director's: alarms up to seq, for everyone
};

// --- the connection ---

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  page.socket = socket;
  socket.onopen = () => {
    page.retries = 0;
    setLink(true);
  };
  socket.onmessage = (message) => {
    page.heardAt = Date.now();
    if (page.silent) {
      page.silent = false;
      setLink(true);
    }
    receive(JSON.parse(message.data));
  };
  socket.onclose = (closed) => {
    if (page.socket !== socket) return;
    setLink(false);
    if (closed.code === 1008) {
      // The director refused us (token): retrying cannot help; reloading asks for the token.
      page.refused = closed.reason || "access refused";
      setLink(false);
      return;
    }
    const wait = RETRY_MS[Math.min(page.retries, RETRY_MS.length - 1)];
    page.retries += 1;
    setTimeout(connect, wait);
  };
}

// The director sends something at least twice a second. A connection that stays open
// with nothing on it means the director itself is stopped: say so, it is not judging.
const SILENT_MS = 2000;

function watchSilence() {
  if (!page.live || page.silent || !page.heardAt) return;
  const silent = Date.now() - page.heardAt;
  if (silent < SILENT_MS) return;
  page.silent = true;
  setLink(true);
}

function setLink(live) {
  page.live = live;
  const link = $("#link");
  link.className = "link " + (live ? (page.silent ? "refused" : "live") : page.refused ? "refused" : "lost");
  $("#link-text").textContent = live
    ? page.silent
      ? "director not answering — stopped? nothing is judged"
      : "live"
    : page.refused
      ? `refused: ${page.refused} — reload the page`
      : page.status
        ? "director unreachable — reconnecting…"
        : "connecting…";
  document.body.classList.toggle("stale", !live);
  page.drawn.clear(); // buttons follow the link: redraw the rows in view
  drawSoon();
}

function receive(message) {
  switch (message.type) {
    case "status":
      applyStatus(message);
      break;
    case "log":
      renderLog(message.events);
      break;
    case "update":
      applyUpdate(message);
      break;
  }
}

// --- the show's state, as the director sends it ---

function applyStatus({ status, calls, figures, director, acknowledged }) {
  renderHealth(director);
  if (acknowledged) page.acknowledged = acknowledged;
  page.status = { file: status.file, epoch: status.epoch, modules: status.modules };
  page.clients = new Map(status.clients.map((c) => [c.name, c]));
  page.order = new Map(status.clients.map((c, i) => [c.name, i]));
  for (const c of status.clients) page.figures.set(c.name, rowFigures(c));
  for (const [name, f] of Object.entries(figures || {})) page.figures.set(name, f);
  for (const name of [...page.history.keys()]) if (!page.clients.has(name)) page.history.delete(name);
  const file = status.file.split("/");
  $("#show-file").textContent = file.slice(-2).join("/");
  $("#show-file").title = status.file;
  $("#epoch").textContent = status.epoch;
  renderAlarms();
  page.drawn.clear();
  renderModules(status.modules);
  renderCalls(calls);
  layoutSoon();
}

function applyUpdate(message) {
  if (message.clients) {
    for (const c of message.clients) {
      if (!page.order.has(c.name)) page.order.set(c.name, page.order.size);
      page.clients.set(c.name, c);
      page.figures.set(c.name, rowFigures(c));
    }
    layoutSoon(); // a state or placement may have moved the row up or down
  }
  if (message.figures) {
    for (const [name, f] of Object.entries(message.figures)) page.figures.set(name, f);
    drawFiguresInView();
  }
  if (message.events) addEvents(message.events);
  if (message.modules) renderModules(message.modules);
  if (message.calls) renderCalls(message.calls);
  if (message.director) renderHealth(message.director);
  if (message.epoch != null && page.status) {
    page.status.epoch = message.epoch;
    $("#epoch").textContent = message.epoch;
  }
}

// The director's own health: is it judging? (docs/backup.md, "The director's own health")
function renderHealth(h) {
  const el = $("#director-health");
  if (!h) return;
  renderRole(h);
  const problems = [];
  if (!h.detector_ticking) problems.push(h.detector_tick_age_s == null ? "detector not started" : `detector stopped ${h.detector_tick_age_s} s ago`);
  // Half a second is where a blocked loop starts to delay decisions that operators feel.
  if (h.loop_lag_ms >= 500) problems.push(`loop lag ${h.loop_lag_ms} ms`);
  if (h.state_queue >= 1000) problems.push(`${h.state_queue} events waiting for the disk`);
  if (h.events_shed) problems.push(`${h.events_shed} events not logged`);
  $("b", el).textContent = problems.length ? problems.join(", ") : "OK";
  el.classList.toggle("bad", problems.length > 0);
  el.title = `the director's own health: event loop lag ${h.loop_lag_ms} ms (worst in 10 s), detector ` +
    `${h.detector_ticking ? "ticking" : "not ticking"}, ${h.state_queue} event(s) waiting to be written, ` +
    `${h.events_shed} shed, stalled ${h.stalls} time(s), ${h.restarts} fault(s) restarted, ` +
    `${h.output_lost || 0} line(s) its terminal or log did not take`;
}

// With standby directors: is this one in charge, and which is? (docs/standby.md)
function renderRole(h) {
  const el = $("#director-role");
  if (!h.name) return; // one director, no etcd: always in charge, nothing to say
  el.hidden = false;
  const others = (h.others || []).join(", ");
  if (h.role === "active") {
    el.textContent = `${h.name} active · term ${h.term}` + (others ? ` · standby: ${others}` : "");
  } else if (h.in_charge) {
    el.textContent = `${h.name} STANDBY · ${h.in_charge} at ${h.in_charge_address} is in charge`;
  } else {
    el.textContent = `${h.name} STANDBY · no director is in charge`;
  }
  el.dataset.role = h.role;
  el.classList.toggle("bad", h.role !== "active" && !h.in_charge); // nobody in charge: loud
  el.classList.toggle("standby", h.role !== "active");
}

function rowFigures(c) {
  return { cpu: c.cpu, memory: c.memory, gpu: c.gpu && c.gpu.load != null ? c.gpu.load : null, fps: frameRate(c.extra) };
}

// --- which clients the table shows, in which order ---

function problem(c) {
  // 0 offline or failed, 1 late, 2 on backup (its outputs play elsewhere, or it carries some),
  // 3 fine, 4 dry (declared, never heard).
  if (c.state === "offline" || c.state === "failed") return 0;
  if (c.late) return 1;
  if (c.plays_on !== c.name || c.carrying) return 2;
  if (c.state === "dry") return 4;
  return 3;
}

function groupOf(c) {
  return c.role === "backup" ? c.name : c.backups[0] || "";
}

function matches(c, search, state, role) {
  if (role && c.role !== role) return false;
  if (state === "problems" && problem(c) > 2) return false;
  if (state === "late" && !c.late) return false;
  if (state === "on-backup" && problem(c) !== 2 && !(c.plays_on !== c.name || c.carrying)) return false;
  if (["online", "offline", "failed", "dry"].includes(state) && c.state !== state) return false;
  if (search && !c.name.toLowerCase().includes(search) && !c.ip.includes(search)) return false;
  return true;
}

function computeView() {
  const search = $("#search").value.trim().toLowerCase();
  const state = $("#state-filter").value;
  const role = $("#role-filter").value;
  const grouped = $("#group").checked;
  const shown = [];
  for (const c of page.clients.values()) if (matches(c, search, state, role)) shown.push(c);
  const place = (c) => page.order.get(c.name);
  const byProblem = (a, b) => problem(a) - problem(b) || place(a) - place(b);
  if (!grouped) {
    shown.sort(byProblem);
    return { view: shown.map((c) => c.name), total: shown.length };
  }
  const groups = new Map(); // group → its clients
  for (const c of shown) {
    const key = groupOf(c);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(c);
  }
  const ranked = [...groups.entries()].map(([key, members]) => {
    members.sort((a, b) => (a.name === key) - (b.name === key) || byProblem(a, b));
    members.sort((a, b) => (b.name === key) - (a.name === key)); // the backup heads its group
    const worst = Math.min(...members.map(problem));
    const first = Math.min(...members.map(place));
    return { key, members, worst, first, problems: members.filter((m) => problem(m) <= 2).length };
  });
  ranked.sort((a, b) => (a.key === "") - (b.key === "") || a.worst - b.worst || a.first - b.first);
  const view = [];
  for (const g of ranked) {
    view.push({ group: g.key, count: g.members.length, problems: g.problems });
    for (const m of g.members) view.push(m.name);
  }
  return { view, total: shown.length };
}

function layoutSoon() {
  if (page.layoutDue) return;
  page.layoutDue = true;
  requestAnimationFrame(() => {
    page.layoutDue = false;
    const { view, total } = computeView();
    page.view = view;
    setText($("#shown-count"), `${total} of ${page.clients.size}`);
    renderSummary();
    drawWindow();
  });
}

function drawSoon() {
  if (page.drawDue) return;
  page.drawDue = true;
  requestAnimationFrame(() => {
    page.drawDue = false;
    drawWindow();
  });
}

function heightOf(item) {
  return typeof item === "string" ? ROW_HEIGHT : GROUP_HEIGHT;
}

// Only the rows in view (and a few beyond) are in the document; spacers stand for the rest.
function drawWindow() {
  const wrap = $("#clients-scroll");
  const top = wrap.scrollTop - ($("#clients thead").offsetHeight || 0);
  const bottom = top + wrap.clientHeight;
  let y = 0;
  let first = -1;
  let last = -1;
  let above = 0;
  for (let i = 0; i < page.view.length; i++) {
    const h = heightOf(page.view[i]);
    if (first < 0 && y + h > top) first = Math.max(0, i - OVERSCAN);
    if (y < bottom) last = i;
    y += h;
  }
  const total = y;
  if (first < 0) first = Math.max(0, page.view.length - OVERSCAN);
  last = Math.min(page.view.length - 1, last + OVERSCAN);
  for (let i = 0; i < first; i++) above += heightOf(page.view[i]);
  let inside = 0;
  const keep = new Set();
  const children = [];
  for (let i = first; i <= last && i >= 0; i++) {
    const item = page.view[i];
    inside += heightOf(item);
    if (typeof item !== "string") {
      children.push(groupRow(item));
      continue;
    }
    keep.add(item);
    let row = page.rows.get(item);
    if (!row) {
      row = makeRow(item);
      page.rows.set(item, row);
    }
    const c = page.clients.get(item);
    if (page.drawn.get(item) !== c) {
      updateRow(row, c);
      page.drawn.set(item, c);
      drawFigures(row, item);
    }
    children.push(row);
  }
  for (const name of [...page.rows.keys()]) {
    if (!keep.has(name)) {
      page.rows.delete(name);
      page.drawn.delete(name);
    }
  }
  const before = $("#spacer-top");
  const after = $("#spacer-bottom");
  before.style.height = `${above}px`;
  after.style.height = `${Math.max(0, total - above - inside)}px`;
  const body = $("#clients tbody");
  const current = body.children;
  let same = current.length === children.length + 2;
  for (let i = 0; same && i < children.length; i++) same = current[i + 1] === children[i];
  if (!same) body.replaceChildren(before, ...children, after);
}

function groupRow({ group, count, problems }) {
  const row = document.createElement("tr");
  row.className = "group";
  row.dataset.group = group;
  row.innerHTML = `<td colspan="11"><b></b> <span class="count"></span></td>`;
  $("b", row).textContent = group ? `backup ${group}` : "no backup";
  $(".count", row).textContent = `${count} client${count === 1 ? "" : "s"}${problems ? ` · ${problems} with problems` : ""}`;
  return row;
}

function renderSummary() {
  const counts = { online: 0, offline: 0, failed: 0, late: 0, "on-backup": 0, dry: 0 };
  for (const c of page.clients.values()) {
    if (c.state in counts) counts[c.state] += 1;
    if (c.late) counts.late += 1;
    if (c.role === "playout" && c.plays_on !== c.name) counts["on-backup"] += 1;
  }
  for (const [key, n] of Object.entries(counts)) {
    const cell = $(`#summary [data-count="${key}"]`);
    setText($("b", cell), String(n));
    cell.classList.toggle("zero", n === 0);
  }
  setText($("#online-count"), `${counts.online}/${page.clients.size}`);
}

// --- one client's row ---

function makeRow(name) {
  const row = document.createElement("tr");
  row.className = "client";
  row.dataset.client = name;
  row.innerHTML = `
    <td class="c-state"><span class="pill"></span><span class="late" hidden>LATE</span></td>
    <td class="c-name"><span class="name"></span><span class="shield" hidden></span><span class="role"></span><div class="sub"></div></td>
    <td class="c-ip mono"></td>
    <td class="c-plays"><span class="plays"></span><span class="unconfirmed" hidden>NOT CONFIRMED</span></td>
    <td class="c-heard mono"></td>
    ${["cpu", "memory", "gpu", "fps"].map((m) => `
    <td class="c-metric" data-metric="${m}"><span class="value">–</span>
      <svg class="spark" viewBox="0 0 60 18" preserveAspectRatio="none"><path class="area"/><path class="line"/></svg></td>`).join("")}
    <td class="c-auto"></td>
    <td class="c-actions">
      <div class="buttons">
        <button type="button" class="switch danger">Switch to Backup</button>
        <button type="button" class="move">Move To…</button>
      </div>
      <div class="why"></div>
    </td>`;
  $(".shield", row).innerHTML = SHIELD;
  for (const cell of row.querySelectorAll(".c-metric")) {
    cell.title = "the last ten minutes";
    cell.addEventListener("click", () => showHistory(name));
  }
  $(".switch", row).addEventListener("click", () => askSwitch(name));
  $(".move", row).addEventListener("click", () => askMove(name));
  return row;
}

const MARKS = {
  ok: `<svg viewBox="0 0 12 12" aria-label="ok"><path d="M2.5 6.3 5 8.7l4.6-5.2"/></svg>`,
  failed: `<svg viewBox="0 0 12 12" aria-label="failed"><path d="m3.2 3.2 5.6 5.6m0-5.6-5.6 5.6"/></svg>`,
};

function mark(ok) {
  const span = document.createElement("span");
  span.className = "mark";
  span.innerHTML = ok ? MARKS.ok : MARKS.failed;
  return span;
}

const SHIELD = `<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M8 1 2.5 3v4.2c0 3.4 2.3 6.4 5.5 7.8 3.2-1.4 5.5-4.4 5.5-7.8V3L8 1Z"/><path class="tick" d="m5.3 8 1.9 1.9 3.6-3.8"/></svg>`;

function covers(backup) {
  const names = [];
  for (const c of page.clients.values()) if (c.backups.includes(backup)) names.push(c.name);
  return names;
}

function updateRow(row, c) {
  row.dataset.state = c.state;
  row.dataset.playsOn = c.plays_on;
  row.dataset.problem = problem(c);
  row.classList.toggle("taken-over", c.plays_on !== c.name);
  row.classList.toggle("carrying", Boolean(c.carrying));

  const pill = $(".pill", row);
  pill.className = `pill ${c.state}`;
  pill.textContent = c.state.toUpperCase();
  // A failed client's agent is heard but its show is not playing: which check, and why.
  const failedWhy = c.state === "failed" ? failedWords(c) : "";
  pill.title = failedWhy;
  $(".late", row).hidden = !(c.late && (c.state === "online" || c.state === "failed"));

  $(".name", row).textContent = c.name;
  const shield = $(".shield", row);
  shield.hidden = c.backups.length === 0;
  shield.title = `backed up by ${c.backups.join(", ")}`;
  const sub = $(".sub", row);
  sub.textContent = failedWhy || (c.role === "backup" ? `covers ${covers(c.name).join(", ") || "—"}` : c.gpu_name || "");
  sub.title = sub.textContent;
  sub.classList.toggle("failed-check", Boolean(failedWhy));
  $(".c-ip", row).textContent = c.ip;
  const role = $(".role", row);
  role.textContent = c.state === "dry" ? `${c.role} · dry` : c.role;
  role.className = `role ${c.role}`;

  const plays = $(".plays", row);
  if (c.role === "backup") {
    plays.textContent = c.carrying ? `carrying ${c.carrying}` : "standby";
    plays.className = c.carrying ? "plays busy" : "plays idle";
  } else if (c.plays_on !== c.name) {
    plays.textContent = `${c.plays_on}`;
    plays.className = "plays away";
    plays.title = `${c.outputs.concat(c.live_inputs).join(", ")} play on ${c.plays_on}`;
  } else {
    plays.textContent = `${c.name}`;
    plays.className = "plays home";
    plays.title = c.outputs.concat(c.live_inputs).join(", ");
  }
  drawHeard(row, c);
  // Announced to the agents, but the client that plays the outputs now has not said so yet.
  const unconfirmed = $(".unconfirmed", row);
  unconfirmed.hidden = c.confirmed !== false;
  unconfirmed.title = `announced, not yet confirmed by ${c.plays_on}`;

  renderAuto($(".c-auto", row), c);

  const covered = c.backups.length > 0;
  const switchButton = $(".switch", row);
  const moveButton = $(".move", row);
  $(".buttons", row).hidden = !covered;
  switchButton.disabled = !page.live || !c.can_switch;
  moveButton.disabled = !page.live || c.move_targets.length === 0;
  switchButton.title = c.can_switch ? `take over ${c.name} now` : c.why_not_switch;
  const away = c.plays_on !== c.name;
  const whyNotMove = away ? "no online client can take its outputs now" : "";
  moveButton.title = c.move_targets.length ? `move to ${c.move_targets.join(" or ")}` : whyNotMove;
  let why = "";
  if (!page.live) why = "";
  else if (!covered) why = c.role === "backup" ? "" : "no backup covers it";
  else if (!c.can_switch) why = c.why_not_switch;
  if (why && whyNotMove && moveButton.disabled) why = `${why}; ${whyNotMove}`;
  const whyCell = $(".why", row);
  whyCell.textContent = why;
  whyCell.title = why;
}

function failedWords(c) {
  if (!c.failed_check) return "failed";
  return c.failed_message ? `${c.failed_check}: ${c.failed_message}` : c.failed_check;
}

// "now" while heartbeats arrive on time; else how long ago the last one came.
function drawHeard(row, c) {
  const cell = $(".c-heard", row);
  if (c.heard_at == null) {
    setText(cell, "never");
    cell.title = "";
    return;
  }
  cell.title = `last heartbeat ${clock(c.heard_at)}`;
  if (c.state === "online" && !c.late) {
    setText(cell, "now");
    return;
  }
  setText(cell, ago(Date.now() / 1000 - c.heard_at));
}

function ago(seconds) {
  if (seconds < 60) return `${Math.max(0, seconds).toFixed(1)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

function renderAuto(cell, c) {
  if (c.backups.length === 0) {
    cell.textContent = "";
    return;
  }
  let toggle = $("input", cell);
  if (!toggle) {
    cell.innerHTML = `<label class="toggle"><input type="checkbox" role="switch"><span class="track"></span><span class="label"></span></label>`;
    toggle = $("input", cell);
    toggle.addEventListener("change", () => setAuto(c.name, toggle.checked));
  }
  toggle.checked = c.auto_backup;
  toggle.disabled = !page.live;
  toggle.setAttribute("aria-label", `automatic backup for ${c.name}`);
  $(".label", cell).textContent = c.auto_backup ? "ON" : "OFF";
}

function frameRate(extra) {
  if (!extra) return null;
  for (const key of ["fps", "frame_rate", "framerate"]) {
    if (typeof extra[key] === "number") return extra[key];
  }
  return null;
}

function formatFigure(metric, value) {
  if (value == null) return "–";
  if (metric === "fps") return value.toFixed(value % 1 ? 2 : 0);
  return `${Math.round(value)}%`;
}

// --- performance and sparklines ---

function historyOf(name) {
  if (!page.history.has(name)) page.history.set(name, { cpu: [], memory: [], gpu: [], fps: [] });
  return page.history.get(name);
}

// Every client's figures are sampled twice a second (the director pushes only figures that
// moved, so an unchanged figure is carried forward); only rows in view are drawn.
function sampleFigures() {
  for (const [name, c] of page.clients) {
    if (c.state !== "online") continue;
    const history = historyOf(name);
    const f = page.figures.get(name) || {};
    for (const metric of ["cpu", "memory", "gpu", "fps"]) {
      const series = history[metric];
      series.push(f[metric] ?? null);
      if (series.length > HISTORY) series.shift();
    }
  }
  drawFiguresInView();
}

function drawFiguresInView() {
  for (const [name, row] of page.rows) drawFigures(row, name);
}

function drawFigures(row, name) {
  const f = page.figures.get(name) || {};
  const history = historyOf(name);
  const online = row.dataset.state === "online" || row.dataset.state === "failed"; // heard
  for (const metric of ["cpu", "memory", "gpu", "fps"]) {
    const cell = $(`[data-metric="${metric}"]`, row);
    const value = f[metric];
    if (online || $(".value", cell).textContent === "–") {
      setText($(".value", cell), formatFigure(metric, value));
      cell.classList.toggle("hot", metric !== "fps" && value != null && value >= 90);
    }
    drawSpark(cell, history[metric], metric);
  }
}

function drawSpark(cell, series, metric) {
  const known = series.filter((v) => v != null);
  const svg = $(".spark", cell);
  svg.classList.toggle("empty", known.length < 2); // no figures (no GPU, say): no room taken
  if (known.length < 2) {
    $(".line", svg).setAttribute("d", "");
    $(".area", svg).setAttribute("d", "");
    return;
  }
  const top = metric === "fps" ? Math.max(...known) * 1.1 || 1 : 100;
  const step = 60 / (HISTORY - 1);
  const start = HISTORY - series.length;
  let line = "";
  let first = null;
  let last = null;
  series.forEach((v, i) => {
    if (v == null) return;
    const x = ((start + i) * step).toFixed(1);
    const y = (17 - (Math.min(v, top) / top) * 16).toFixed(1);
    line += `${line ? "L" : "M"}${x},${y}`;
    if (first === null) first = x;
    last = x;
  });
  const path = $(".line", svg);
  if (path.getAttribute("d") === line) return;
  path.setAttribute("d", line);
  $(".area", svg).setAttribute("d", `${line}L${last},18L${first},18Z`);
}

// --- buttons ---

function clientStatus(name) {
  return page.clients.get(name);
}

async function askSwitch(name) {
  const c = clientStatus(name);
  if (!c) return;
  const what = c.outputs.concat(c.live_inputs).join(", ") || "its outputs";
  const ok = await confirmDialog({
    title: `Switch ${name} to backup?`,
    text: `${what} move from ${name} to ${c.backups.join(" or ")} now.`,
    action: "Switch to Backup",
  });
  if (ok) await post("/api/backup/switch", { client: name });
}

async function askMove(name) {
  const c = clientStatus(name);
  if (!c || c.move_targets.length === 0) return;
  const target = await confirmDialog({
    title: `Move ${name}'s outputs`,
    text: `They play on ${c.plays_on} now. Move them to:`,
    action: "Move",
    targets: c.move_targets.map((t) => [t, t === name ? `${t} (home)` : t]),
  });
  if (target) await post("/api/backup/move", { client: name, target });
}

async function setAuto(name, on) {
  const answer = await post("/api/backup/auto", { client: name, on });
  // A refusal raises no event, so no new status comes: put the switch back by hand.
  if (!answer.ok) {
    page.drawn.delete(name);
    drawSoon();
  }
}

function confirmDialog({ title, text, action, targets }) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  const fieldset = $("#confirm-targets");
  fieldset.querySelectorAll("label").forEach((l) => l.remove());
  fieldset.hidden = !targets;
  for (const [i, [value, label]] of (targets || []).entries()) {
    const option = document.createElement("label");
    option.innerHTML = `<input type="radio" name="target"><span></span>`;
    $("input", option).value = value;
    $("input", option).checked = i === 0;
    $("span", option).textContent = label;
    fieldset.append(option);
  }
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue !== "ok") return resolve(null);
        if (!targets) return resolve(true);
        const chosen = $("input[name=target]:checked", fieldset);
        resolve(chosen ? chosen.value : null);
      },
      { once: true },
    );
  });
}

// --- ten minutes of one client's figures, kept by the director ---

const LABELS = { cpu: "CPU", memory: "Memory", gpu: "GPU", fps: "Frame rate" };

async function showHistory(name) {
  const dialog = $("#history");
  setText($("#history-title"), `${name}: the last ten minutes`);
  const charts = $("#history-charts");
  charts.replaceChildren();
  let answer;
  try {
    const response = await fetch(`/api/history/${encodeURIComponent(name)}`, { credentials: "same-origin" });
    answer = await response.json();
  } catch (error) {
    answer = { ok: false, message: `the director did not answer (${error.message})` };
  }
  if (!answer.ok) {
    setText($("#history-text"), answer.message);
  } else {
    const count = answer.cpu.length;
    const minutes = (count * answer.every) / 60;
    setText($("#history-text"), `${count} samples, one every ${answer.every} s: ${minutes.toFixed(1)} min back`);
    for (const metric of ["cpu", "memory", "gpu", "fps"]) charts.append(historyChart(metric, answer[metric]));
  }
  if (!dialog.open) dialog.showModal();
}

function historyChart(metric, series) {
  const figure = document.createElement("figure");
  figure.className = "history";
  figure.dataset.metric = metric;
  const known = series.filter((v) => v != null);
  const top = metric === "fps" ? Math.max(...known, 1) * 1.1 : 100;
  const width = 300;
  let path = "";
  let pen = false;
  series.forEach((value, i) => {
    if (value == null) { pen = false; return; } // not heard then: a gap, not a line across it
    const x = (i / Math.max(series.length - 1, 1)) * width;
    const y = 40 - (Math.min(value, top) / top) * 40;
    path += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    pen = true;
  });
  const last = known.length ? formatFigure(metric, known[known.length - 1]) : "–";
  const peak = known.length ? formatFigure(metric, Math.max(...known)) : "–";
  figure.innerHTML = `<figcaption><b></b> <span class="mono"></span></figcaption>
    <svg viewBox="0 0 ${width} 40" preserveAspectRatio="none"><path class="line"/></svg>`;
  setText($("b", figure), LABELS[metric]);
  setText($(".mono", figure), known.length ? `now ${last}, highest ${peak}` : "not reported");
  $(".line", figure).setAttribute("d", path);
  figure.dataset.points = String(known.length);
  return figure;
}

async function post(path, body) {
  let answer;
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    answer = await response.json().catch(() => ({ ok: false, message: `HTTP ${response.status}` }));
  } catch (error) {
    answer = { ok: false, message: `the director did not answer (${error.message})` };
  }
  toast(answer.ok, answer.message);
  return answer;
}

function toast(ok, text) {
  const note = document.createElement("div");
  note.className = `toast ${ok ? "ok" : "refused"}`;
  note.textContent = ok ? text : `Refused: ${text}`;
  $("#toasts").append(note);
  setTimeout(() => note.remove(), ok ? 4000 : 8000);
}

// --- modules and action results ---

function renderModules(modules) {
  const list = $("#modules");
  list.replaceChildren(
    ...modules.map((m) => {
      const item = document.createElement("li");
      item.dataset.module = m.name;
      item.className = `module ${statusClass(m.status)}`;
      item.innerHTML = `<span class="dot"></span><span class="name"><b></b><span class="type"></span></span><span class="status"></span><div class="message"></div>`;
      $(".name b", item).textContent = m.name;
      $(".type", item).textContent = m.type;
      $(".status", item).textContent = m.status.replace(/_/g, " ");
      $(".message", item).textContent = m.message;
      return item;
    }),
  );
}

function statusClass(status) {
  if (status === "ok") return "good";
  if (status === "connecting" || status === "unknown_warning") return "warn";
  if (status === "disconnected") return "idle";
  return "bad";
}

function renderCalls(calls) {
  const list = $("#calls");
  if (!calls || calls.length === 0) {
    const none = document.createElement("li");
    none.className = "none";
    none.textContent = "no action has run yet";
    list.replaceChildren(none);
    return;
  }
  const sorted = [...calls].sort((a, b) => b.started - a.started);
  list.replaceChildren(
    ...sorted.map((call) => {
      const item = document.createElement("li");
      item.className = call.ok ? "good" : "bad";
      item.innerHTML = `<span class="mark"></span><span class="action"></span><span class="took"></span><span class="when"></span><div class="error"></div>`;
      $(".mark", item).replaceWith(mark(call.ok));
      $(".action", item).textContent = call.action;
      $(".took", item).textContent = milliseconds(call.duration);
      $(".when", item).textContent = clock(call.started);
      $(".error", item).textContent = call.error || "";
      return item;
    }),
  );
}

// --- the event log and alarms ---

function renderLog(events) {
  $("#events").replaceChildren();
  page.alarms = [];
  addEvents(events, false);
}

// Events arrive in batches (the director paces its updates): one change of the list each.
function addEvents(events, fresh = true) {
  const list = $("#events");
  const newest = events.slice(-EVENTS_KEPT);
  const items = document.createDocumentFragment();
  for (let i = newest.length - 1; i >= 0; i--) items.append(eventItem(newest[i], fresh));
  const added = fresh ? [...items.children] : [];
  list.prepend(items);
  while (list.children.length > EVENTS_KEPT) list.lastElementChild.remove();
  if (added.length) setTimeout(() => added.forEach((item) => item.classList.remove("fresh")), FRESH_MS);
  let alarmed = false;
  for (const event of events) {
    if (isAlarm(event)) {
      page.alarms.push(event);
      alarmed = true;
    } else if (event.kind === "alarm.acknowledged" && event.up_to > page.acknowledged.seq) {
      // Acknowledged by an operator somewhere (this page, another, OSC, the CLI): for all.
      page.acknowledged = { seq: event.up_to, by: event.by, at: event.time };
      alarmed = true;
    }
  }
  if (page.alarms.length > EVENTS_KEPT) page.alarms.splice(0, page.alarms.length - EVENTS_KEPT);
  if (alarmed || !fresh) renderAlarms();
}

function eventItem(event, fresh) {
  const item = document.createElement("li");
  item.className = `event ${kindClass(event.kind)}${fresh ? " fresh" : ""}`;
  item.dataset.kind = event.kind;
  item.dataset.seq = event.seq;
  item.innerHTML = `<time></time><span class="kind"></span><span class="text"></span>`;
  $("time", item).textContent = clock(event.time);
  $(".kind", item).textContent = event.kind;
  $(".text", item).textContent = describe(event);
  if (event.kind === "mapping.done") {
    const trace = document.createElement("ul");
    trace.className = "trace";
    for (const action of event.actions || []) {
      const step = document.createElement("li");
      step.className = action.ok ? "good" : "bad";
      step.innerHTML = `<span class="mark"></span><span class="action"></span><span class="took"></span><span class="error"></span>`;
      $(".mark", step).replaceWith(mark(action.ok));
      $(".action", step).textContent = action.action;
      $(".took", step).textContent = milliseconds(action.duration);
      $(".error", step).textContent = action.error || "";
      trace.append(step);
    }
    item.append(trace);
  }
  return item;
}

function kindClass(kind) {
  if (ALARM_KINDS.has(kind)) return "k-alarm";
  if (kind === "mapping.done" || kind === "log.entry") return "k-action";
  if (kind === "client.offline" || kind === "client.failed" || kind === "show.error") return "k-bad";
  if (kind === "client.late") return "k-warn";
  if (kind === "client.online" || kind === "client.recovered") return "k-good";
  if (kind.startsWith("backup.")) return "k-backup";
  return "k-info";
}

function describe(e) {
  const by = e.by ? ` by ${e.by}` : "";
  switch (e.kind) {
    case "client.online":
      return `${e.client} (${e.ip}) is online`;
    case "client.offline":
      return `${e.client} (${e.ip}) is offline${e.automatic ? " — automatic takeover" : e.why_not ? ` — ${e.why_not}` : ""}`;
    case "client.failed":
      return `${e.client} (${e.ip}) failed: ${e.check}${e.message ? ` — ${e.message}` : ""}`;
    case "client.recovered":
      return `${e.client} (${e.ip}) recovered: every check passes`;
    case "client.late":
      return e.late ? `${e.client} is late` : `${e.client} is on time again`;
    case "backup.activated":
      return `${e.client} → ${e.backup}: ${[...(e.outputs || []), ...(e.live_inputs || [])].join(", ")} (${e.reason}${by}, epoch ${e.epoch})`;
    case "backup.moved":
      return `${e.client}: ${e.from} → ${e.to} (${e.reason}${by}, epoch ${e.epoch})`;
    case "backup.confirmed":
      return `${e.plays_on} confirmed epoch ${e.epoch} for ${e.client} after ${milliseconds(e.after)}${e.alarmed ? " (alarm ended)" : ""}`;
    case "backup.failed":
      return `${e.action === "move" ? "move" : "takeover"} of ${e.client} refused: ${e.message} (${e.trigger}${by})`;
    case "backup.auto":
      return `automatic backup for ${e.client} ${e.on ? "on" : "off"} (${e.reason}${by})`;
    case "alarm":
      return e.message;
    case "alarm.acknowledged":
      return `alarms up to #${e.up_to} acknowledged for everyone by ${e.by || "an operator"}`;
    case "action.failed":
      return `${e.action}: ${e.message}`;
    case "mapping.done":
      return `${e.mapping} on ${e.on} #${e.event_seq}: ${e.ok ? "ok" : "FAILED"}`;
    case "module.status":
      return `${e.module}: ${e.status.replace(/_/g, " ")}${e.message ? ` — ${e.message}` : ""}`;
    case "log.entry":
      return `${e.module}: ${e.message}`;
    case "show.loaded":
      return `${e.file}: ${e.clients} clients, ${e.modules} modules, ${e.mappings} mappings, epoch ${e.epoch}${e.restored ? `; restored ${e.restored}` : ""}`;
    case "show.reloaded":
    case "show.error":
      return e.message;
    default: {
      const { seq, time, kind, ...rest } = e;
      return Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
        .join(" ");
    }
  }
}

function acknowledged() {
  return page.acknowledged.seq;
}

// Alarms of one kind and reason that come together (a mass failure raises one per client) are
// shown as one line: how many, and the first few client names.
function alarmGroups(open) {
  const groups = [];
  for (const a of open) {
    const label = a.alarm || a.reason || a.kind;
    const last = groups[groups.length - 1];
    if (last && last.kind === a.kind && last.label === label && last.time - a.time <= TOGETHER_S) {
      last.items.push(a);
      last.time = a.time;
    } else {
      groups.push({ kind: a.kind, label, time: a.time, items: [a] });
    }
  }
  return groups;
}

function summariseNames(names, limit = NAMES_SHOWN) {
  if (names.length <= limit) return names.join(", ");
  return `${names.slice(0, limit).join(", ")} … and ${names.length - limit} more`;
}

function renderAlarms() {
  const seen = acknowledged();
  const open = page.alarms.filter((a) => a.seq > seen).reverse(); // newest first
  const panel = $("#alarms");
  panel.hidden = open.length === 0;
  if (open.length === 0) return;
  const groups = alarmGroups(open);
  $("#alarm-title").textContent = open.length === 1 ? "1 alarm" : `${open.length} alarms`;
  $("#alarm-list").replaceChildren(
    ...groups.slice(0, 4).map((g) => {
      const item = document.createElement("li");
      item.dataset.kind = g.kind;
      item.dataset.count = g.items.length;
      item.innerHTML = `<time></time><span class="kind"></span><span class="text"></span>`;
      $("time", item).textContent = clock(g.items[0].time);
      $(".kind", item).textContent = g.label;
      let text;
      if (g.items.length === 1) {
        const a = g.items[0];
        text = a.kind === "alarm" ? a.message : describe(a);
      } else {
        const names = [...new Set(g.items.map((a) => a.client).filter(Boolean).reverse())];
        const span = (g.items[0].time - g.time).toFixed(1);
        text = `${g.items.length} × within ${span} s${names.length ? `: ${summariseNames(names)}` : ""}`;
      }
      $(".text", item).textContent = text;
      $(".text", item).title = text;
      return item;
    }),
    ...(groups.length > 4 ? [more(groups.length - 4)] : []),
  );
}

function more(count) {
  const item = document.createElement("li");
  item.className = "more";
  item.textContent = `and ${count} more in the event log`;
  return item;
}

// --- small things ---

function clock(seconds) {
  const d = new Date(seconds * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

function milliseconds(seconds) {
  const ms = seconds * 1000;
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function tickClock() {
  setText($("#clock"), clock(Date.now() / 1000).slice(0, 8));
}

document.addEventListener("DOMContentLoaded", () => {
  $("#ack").addEventListener("click", async () => {
    // For every operator: the director keeps it, and every page hears alarm.acknowledged.
    const last = page.alarms.length ? page.alarms[page.alarms.length - 1].seq : 0;
    const answer = await post("/api/alarms/acknowledge", { seq: last });
    if (answer.ok && answer.seq > page.acknowledged.seq) {
      page.acknowledged = { seq: answer.seq, by: answer.by, at: answer.at };
      renderAlarms();
    }
  });
  for (const control of ["#search", "#state-filter", "#role-filter", "#group"]) {
    $(control).addEventListener("input", () => {
      $("#clients-scroll").scrollTop = 0;
      layoutSoon();
    });
  }
  for (const cell of document.querySelectorAll("#summary [data-count]")) {
    cell.addEventListener("click", () => {
      const filter = $("#state-filter");
      filter.value = filter.value === cell.dataset.count ? "" : cell.dataset.count;
      filter.dispatchEvent(new Event("input"));
    });
  }
  $("#clients-scroll").addEventListener("scroll", drawSoon, { passive: true });
  window.addEventListener("resize", drawSoon);
  tickClock();
  setInterval(tickClock, 1000); // the wall clock only: nothing is fetched
  setInterval(sampleFigures, SAMPLE_MS);
  setInterval(watchSilence, 250);
  setInterval(() => {
    for (const [name, row] of page.rows) drawHeard(row, page.clients.get(name));
  }, 1000);
  connect();
});

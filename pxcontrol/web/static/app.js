// The Live Systems page: everything it shows is pushed by the director over one websocket.
// No polling: a status snapshot arrives on connect and after every event, performance
// figures a few times a second. When the director goes away the page says so, greys
// out what it can no longer vouch for, and reconnects by itself.
"use strict";

const HISTORY = 60; // sparkline samples per figure (30 s at two a second)
const EVENTS_KEPT = 500;
const ALARM_KINDS = new Set(["alarm", "backup.failed", "action.failed"]);
const RETRY_MS = [250, 500, 1000, 2000]; // then every 2 s until the director is back

const $ = (selector, root = document) => root.querySelector(selector);

const page = {
  socket: null,
  live: false,
  refused: "",
  retries: 0,
  status: null,
  rows: new Map(), // client name → its table row
  history: new Map(), // client name → { cpu: [], memory: [], gpu: [], fps: [] }
  alarms: [], // alarm-kind events, oldest first
  ackKey: "",
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
  socket.onmessage = (message) => receive(JSON.parse(message.data));
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

function setLink(live) {
  page.live = live;
  const link = $("#link");
  link.className = "link " + (live ? "live" : page.refused ? "refused" : "lost");
  $("#link-text").textContent = live
    ? "live"
    : page.refused
      ? `refused: ${page.refused} — reload the page`
      : page.status
        ? "director unreachable — reconnecting…"
        : "connecting…";
  document.body.classList.toggle("stale", !live);
  if (page.status) renderClients(page.status.clients);
}

function receive(message) {
  switch (message.type) {
    case "status":
      page.status = message.status;
      renderStatus(message.status, message.calls);
      break;
    case "log":
      renderLog(message.events);
      break;
    case "event":
      addEvent(message.event, true);
      break;
    case "performance":
      addPerformance(message.clients);
      break;
  }
}

// --- the clients ---

function renderStatus(status, calls) {
  const file = status.file.split("/");
  $("#show-file").textContent = file.slice(-2).join("/");
  $("#show-file").title = status.file;
  $("#epoch").textContent = status.epoch;
  const online = status.clients.filter((c) => c.state === "online").length;
  $("#online-count").textContent = `${online}/${status.clients.length}`;
  const key = `pxcontrol.ack.${status.file}`;
  if (page.ackKey !== key) {
    page.ackKey = key;
    renderAlarms();
  }
  renderClients(status.clients);
  renderModules(status.modules);
  renderCalls(calls);
}

function renderClients(clients) {
  const body = $("#clients tbody");
  const names = new Set(clients.map((c) => c.name));
  for (const [name, row] of page.rows) {
    if (!names.has(name)) {
      row.remove();
      page.rows.delete(name);
    }
  }
  const covers = new Map(); // backup → the clients it covers
  for (const c of clients) {
    for (const b of c.backups) covers.set(b, [...(covers.get(b) || []), c.name]);
  }
  clients.forEach((client, i) => {
    let row = page.rows.get(client.name);
    if (!row) {
      row = makeRow(client.name);
      page.rows.set(client.name, row);
    }
    updateRow(row, client, covers.get(client.name) || []);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
}

function makeRow(name) {
  const row = document.createElement("tr");
  row.dataset.client = name;
  row.innerHTML = `
    <td class="c-state"><span class="pill"></span><span class="late" hidden>LATE</span></td>
    <td class="c-name"><span class="name"></span><span class="shield" hidden></span><span class="role"></span><div class="sub"></div></td>
    <td class="c-ip mono"></td>
    <td class="c-plays"><span class="plays"></span><span class="unconfirmed" hidden>NOT CONFIRMED</span></td>
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

function updateRow(row, c, covers) {
  row.dataset.state = c.state;
  row.dataset.playsOn = c.plays_on;
  row.classList.toggle("taken-over", c.plays_on !== c.name);
  row.classList.toggle("carrying", Boolean(c.carrying));

  const pill = $(".pill", row);
  pill.className = `pill ${c.state}`;
  pill.textContent = c.state.toUpperCase();
  $(".late", row).hidden = !(c.late && c.state === "online");

  $(".name", row).textContent = c.name;
  const shield = $(".shield", row);
  shield.hidden = c.backups.length === 0;
  shield.title = `backed up by ${c.backups.join(", ")}`;
  $(".sub", row).textContent =
    c.role === "backup" ? `covers ${covers.join(", ") || "—"}` : c.gpu_name || "";
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
  // Announced to the agents, but the client that plays the outputs now has not said so yet.
  const unconfirmed = $(".unconfirmed", row);
  unconfirmed.hidden = c.confirmed !== false;
  unconfirmed.title = `announced, not yet confirmed by ${c.plays_on}`;

  const figures = {
    cpu: c.cpu,
    memory: c.memory,
    gpu: c.gpu && c.gpu.load != null ? c.gpu.load : null,
    fps: frameRate(c.extra),
  };
  for (const [metric, value] of Object.entries(figures)) {
    const cell = $(`[data-metric="${metric}"]`, row);
    $(".value", cell).textContent = formatFigure(metric, value);
    cell.classList.toggle("hot", metric !== "fps" && value != null && value >= 90);
    drawSpark(cell, historyOf(c.name)[metric], metric);
  }

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
  $(".why", row).textContent = why;
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

function addPerformance(clients) {
  for (const [name, p] of Object.entries(clients)) {
    const history = historyOf(name);
    const sample = {
      cpu: p.cpu,
      memory: p.memory,
      gpu: p.gpu && p.gpu.load != null ? p.gpu.load : null,
      fps: frameRate(p.extra),
    };
    for (const [metric, value] of Object.entries(sample)) {
      const series = history[metric];
      series.push(value);
      if (series.length > HISTORY) series.shift();
    }
    const row = page.rows.get(name);
    if (!row) continue;
    for (const [metric, value] of Object.entries(sample)) {
      const cell = $(`[data-metric="${metric}"]`, row);
      if (row.dataset.state === "online") {
        $(".value", cell).textContent = formatFigure(metric, value);
        cell.classList.toggle("hot", metric !== "fps" && value != null && value >= 90);
      }
      drawSpark(cell, history[metric], metric);
    }
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
  $(".line", svg).setAttribute("d", line);
  $(".area", svg).setAttribute("d", `${line}L${last},18L${first},18Z`);
}

// --- buttons ---

function clientStatus(name) {
  return page.status && page.status.clients.find((c) => c.name === name);
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
  if (!answer.ok && page.status) renderClients(page.status.clients);
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
  for (const event of events) addEvent(event, false);
  renderAlarms();
}

function addEvent(event, fresh) {
  const list = $("#events");
  list.prepend(eventItem(event, fresh));
  while (list.children.length > EVENTS_KEPT) list.lastElementChild.remove();
  if (ALARM_KINDS.has(event.kind)) {
    page.alarms.push(event);
    if (fresh) renderAlarms();
  }
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
  if (kind === "client.offline" || kind === "show.error") return "k-bad";
  if (kind === "client.late") return "k-warn";
  if (kind === "client.online") return "k-good";
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
  return Number(localStorage.getItem(page.ackKey) || 0);
}

function renderAlarms() {
  const seen = acknowledged();
  const open = page.alarms.filter((a) => a.seq > seen).reverse();
  const panel = $("#alarms");
  panel.hidden = open.length === 0;
  if (open.length === 0) return;
  $("#alarm-title").textContent = open.length === 1 ? "1 alarm" : `${open.length} alarms`;
  $("#alarm-list").replaceChildren(
    ...open.slice(0, 4).map((a) => {
      const item = document.createElement("li");
      item.dataset.kind = a.kind;
      item.innerHTML = `<time></time><span class="kind"></span><span class="text"></span>`;
      $("time", item).textContent = clock(a.time);
      $(".kind", item).textContent = a.alarm || a.reason || a.kind;
      $(".text", item).textContent = a.kind === "alarm" ? a.message : describe(a);
      return item;
    }),
    ...(open.length > 4 ? [more(open.length - 4)] : []),
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
  $("#clock").textContent = clock(Date.now() / 1000).slice(0, 8);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#ack").addEventListener("click", () => {
    const last = page.alarms.length ? page.alarms[page.alarms.length - 1].seq : 0;
    localStorage.setItem(page.ackKey, String(last));
    renderAlarms();
  });
  tickClock();
  setInterval(tickClock, 1000); // the wall clock only: nothing is fetched
  connect();
});

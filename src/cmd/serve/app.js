// The voicemail page: talks only to the JSON API; every text from the spool
// goes in with textContent, never as HTML.
"use strict";
let csrf = "";
let current = "INBOX";
let folderNames = [];
// The box shown: the owner's own, or the one an admin opened.
let box = null;
let admin = false;
let events = null;

function $(id) { return document.getElementById(id); }
function status(text) { $("status").textContent = text; }

// An admin names the box in every request about one.
function withBox(path) {
  if (!admin || !box) { return path; }
  return path + (path.includes("?") ? "&" : "?") + "mailbox=" + encodeURIComponent(box);
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  if (r.status === 401) { location.href = "/"; throw new Error("logged out"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { throw new Error(body.error || ("HTTP " + r.status)); }
  return body;
}

function post(path, body, type) {
  const headers = { "X-CSRF-Token": csrf };
  if (type) { headers["Content-Type"] = type; }
  return api(path, { method: "POST", headers: headers, body: body });
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) { e.textContent = String(text); }
  if (cls) { e.className = cls; }
  return e;
}

function button(label, cls, onclick) {
  const b = el("button", label, cls);
  b.type = "button";
  b.addEventListener("click", onclick);
  return b;
}

function duration(s) {
  if (s === null || s === undefined) { return "?"; }
  s = Math.round(s);
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function callerOf(m) {
  return m.callerid_name ? m.callerid_name + " <" + (m.callerid_num || "") + ">" : (m.callerid_num || m.callerid || "unknown");
}

async function loadFolders() {
  const folders = await api(withBox("/api/folders"));
  folderNames = folders.map(f => f.folder);
  const nav = $("folders");
  nav.replaceChildren();
  for (const f of folders) {
    const b = button(f.folder + " (" + f.count + ")", f.folder === current ? "current" : "", () => { current = f.folder; refresh(); });
    b.dataset.folder = f.folder;
    nav.appendChild(b);
  }
}

function base(m) {
  return "/api/messages/" + encodeURIComponent(m.folder) + "/" + encodeURIComponent(m.number);
}

async function act(path, what) {
  try {
    await post(withBox(path));
    status(what);
  } catch (e) {
    status("Failed: " + e.message);
  }
  await refresh();
}

function row(m) {
  const tr = el("tr");
  tr.dataset.number = m.number;
  tr.appendChild(el("td", callerOf(m), "caller"));
  tr.appendChild(el("td", m.date || "?"));
  tr.appendChild(el("td", duration(m.duration)));
  tr.appendChild(el("td", m.urgent ? "urgent" : "", "urgent"));
  const wave = el("td");
  const img = el("img", null, "wave");
  img.alt = "waveform";
  img.loading = "lazy";
  img.src = withBox(base(m) + "/waveform");
  wave.appendChild(img);
  tr.appendChild(wave);
  const play = el("td");
  const audio = el("audio");
  audio.controls = true;
  audio.preload = "none";
  audio.src = withBox(base(m) + "/audio");
  play.appendChild(audio);
  const dl = el("a", "Download", "download");
  dl.href = withBox(base(m) + "/download");
  play.appendChild(dl);
  tr.appendChild(play);
  const acts = el("td", null, "actions");
  if (m.folder === "INBOX" || m.folder === "Urgent") { acts.appendChild(button("Heard", "heard", () => act(base(m) + "/read", "Marked heard."))); }
  if (m.folder === "Old") { acts.appendChild(button("Unheard", "unheard", () => act(base(m) + "/unread", "Marked unheard."))); }
  const sel = el("select", null, "move");
  sel.appendChild(el("option", "Move to…"));
  for (const f of folderNames) {
    if (f !== m.folder && f !== "Urgent" && f !== "Deleted") { sel.appendChild(el("option", f)); }
  }
  sel.addEventListener("change", () => {
    if (sel.selectedIndex > 0) { act(base(m) + "/move?to=" + encodeURIComponent(sel.value), "Moved to " + sel.value + "."); }
  });
  acts.appendChild(sel);
  const fwd = el("input", null, "forward-to");
  fwd.placeholder = "box@context";
  fwd.size = 12;
  acts.appendChild(fwd);
  acts.appendChild(button("Forward", "forward", () => {
    const to = fwd.value.trim();
    if (to) { act(base(m) + "/forward?to=" + encodeURIComponent(to), "Forwarded to " + to + "."); }
  }));
  acts.appendChild(button("Delete", "delete", () => act(base(m) + "/delete", "Deleted.")));
  tr.appendChild(acts);
  return tr;
}

async function loadGreetings() {
  const gs = await api(withBox("/api/greetings"));
  const body = $("greetings").tBodies[0];
  body.replaceChildren(...gs.map(g => {
    const tr = el("tr");
    tr.dataset.kind = g.kind;
    tr.appendChild(el("td", g.kind + (g.exists ? " (" + duration(g.duration) + ")" : " (none)")));
    const play = el("td");
    if (g.exists) {
      const audio = el("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = withBox("/api/greetings/" + g.kind + "/audio");
      play.appendChild(audio);
    }
    tr.appendChild(play);
    const up = el("td");
    const file = el("input");
    file.type = "file";
    file.accept = ".wav,.mp3,.ogg,.flac,audio/*";
    up.appendChild(file);
    up.appendChild(button("Upload", "upload", async () => {
      const f = file.files[0];
      if (!f) { return; }
      const ext = (f.name.split(".").pop() || "wav").toLowerCase();
      try {
        await post(withBox("/api/greetings/" + g.kind + "?ext=" + encodeURIComponent(ext)), f, "application/octet-stream");
        status("Greeting " + g.kind + " set.");
      } catch (e) {
        status("Failed: " + e.message);
      }
      await loadGreetings();
    }));
    tr.appendChild(up);
    const rm = el("td");
    if (g.exists) {
      rm.appendChild(button("Remove", "remove", async () => {
        try {
          await post(withBox("/api/greetings/" + g.kind + "/delete"));
          status("Greeting " + g.kind + " removed.");
        } catch (e) {
          status("Failed: " + e.message);
        }
        await loadGreetings();
      }));
    }
    tr.appendChild(rm);
    return tr;
  }));
}

async function refresh() {
  try {
    await loadFolders();
    const msgs = await api(withBox("/api/messages?folder=" + encodeURIComponent(current)));
    const body = $("messages").tBodies[0];
    body.replaceChildren(...msgs.map(row));
    if (msgs.length === 0) { status("No messages in " + current + "."); }
  } catch (e) {
    status("Failed: " + e.message);
  }
}

// Shows a box: its folders, messages and greetings; new messages (and
// changes made elsewhere) appear without reloading.
async function openBox(mb, folder) {
  box = mb;
  current = folder || "INBOX";
  $("box").hidden = false;
  $("mailbox").textContent = mb;
  if (events) { events.close(); }
  await refresh();
  await loadGreetings().catch(e => status("Failed: " + e.message));
  events = new EventSource(withBox("/events"));
  events.addEventListener("change", () => { refresh(); });
}

async function loadBoxes() {
  const boxes = await api("/api/boxes");
  const body = $("boxes").tBodies[0];
  body.replaceChildren(...boxes.map(b => {
    const tr = el("tr");
    const name = b.box + "@" + b.context;
    const cell = el("td");
    cell.appendChild(button(name, "open", () => openBox(name)));
    tr.appendChild(cell);
    tr.appendChild(el("td", b.owner || ""));
    tr.appendChild(el("td", b.new));
    tr.appendChild(el("td", b.old));
    tr.appendChild(el("td", b.urgent));
    const state = [];
    if (b.full) { state.push("FULL"); }
    if (!b.configured) { state.push("not in voicemail.conf"); }
    for (const [f, n] of Object.entries(b.folders || {})) { state.push(f + ":" + n); }
    tr.appendChild(el("td", state.join(" ")));
    return tr;
  }));
}

async function search(ev) {
  ev.preventDefault();
  const table = $("results");
  try {
    const found = await api("/api/search?caller=" + encodeURIComponent($("caller").value));
    table.tBodies[0].replaceChildren(...found.map(m => {
      const tr = el("tr");
      const name = m.box + "@" + m.context;
      const cell = el("td");
      cell.appendChild(button(name, "open", () => openBox(name, m.folder)));
      tr.appendChild(cell);
      tr.appendChild(el("td", m.folder));
      tr.appendChild(el("td", callerOf(m)));
      tr.appendChild(el("td", m.date || "?"));
      tr.appendChild(el("td", duration(m.duration)));
      return tr;
    }));
    table.hidden = false;
  } catch (e) {
    status("Failed: " + e.message);
  }
}

async function start() {
  const s = await api("/api/session");
  csrf = s.csrf;
  admin = Boolean(s.admin);
  $("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
    location.href = "/";
  });
  if (admin) {
    $("search").addEventListener("submit", search);
    await loadBoxes();
  } else {
    await openBox(s.mailbox);
  }
}

start();

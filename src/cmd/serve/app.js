// The voicemail page: talks only to the JSON API; every text from the spool
// goes in with textContent, never as HTML.
"use strict";
let csrf = "";
let current = "INBOX";
let folderNames = [];

function $(id) { return document.getElementById(id); }
function status(text) { $("status").textContent = text; }

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  if (r.status === 401) { location.href = "/"; throw new Error("logged out"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { throw new Error(body.error || ("HTTP " + r.status)); }
  return body;
}

function post(path) {
  return api(path, { method: "POST", headers: { "X-CSRF-Token": csrf } });
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) { e.textContent = String(text); }
  if (cls) { e.className = cls; }
  return e;
}

function duration(s) {
  if (s === null || s === undefined) { return "?"; }
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

async function loadFolders() {
  const folders = await api("/api/folders");
  folderNames = folders.map(f => f.folder);
  const nav = $("folders");
  nav.replaceChildren();
  for (const f of folders) {
    const b = el("button", f.folder + " (" + f.count + ")", f.folder === current ? "current" : "");
    b.type = "button";
    b.dataset.folder = f.folder;
    b.addEventListener("click", () => { current = f.folder; refresh(); });
    nav.appendChild(b);
  }
}

function base(m) {
  return "/api/messages/" + encodeURIComponent(m.folder) + "/" + encodeURIComponent(m.number);
}

async function act(path, what) {
  try {
    await post(path);
    status(what);
  } catch (e) {
    status("Failed: " + e.message);
  }
  await refresh();
}

function row(m) {
  const tr = el("tr");
  tr.dataset.number = m.number;
  const caller = m.callerid_name ? m.callerid_name + " <" + (m.callerid_num || "") + ">" : (m.callerid_num || m.callerid || "unknown");
  tr.appendChild(el("td", caller, "caller"));
  tr.appendChild(el("td", m.date || "?"));
  tr.appendChild(el("td", duration(m.duration)));
  tr.appendChild(el("td", m.urgent ? "urgent" : "", "urgent"));
  const play = el("td");
  const audio = el("audio");
  audio.controls = true;
  audio.preload = "none";
  audio.src = base(m) + "/audio";
  play.appendChild(audio);
  tr.appendChild(play);
  const acts = el("td");
  const button = (label, path, what) => {
    const b = el("button", label);
    b.type = "button";
    b.addEventListener("click", () => act(path, what));
    acts.appendChild(b);
  };
  if (m.folder === "INBOX" || m.folder === "Urgent") { button("Heard", base(m) + "/read", "Marked heard."); }
  if (m.folder === "Old") { button("Unheard", base(m) + "/unread", "Marked unheard."); }
  const sel = el("select");
  sel.appendChild(el("option", "Move to…"));
  for (const f of folderNames) {
    if (f !== m.folder && f !== "Urgent" && f !== "Deleted") { sel.appendChild(el("option", f)); }
  }
  sel.addEventListener("change", () => {
    if (sel.selectedIndex > 0) { act(base(m) + "/move?to=" + encodeURIComponent(sel.value), "Moved to " + sel.value + "."); }
  });
  acts.appendChild(sel);
  button("Delete", base(m) + "/delete", "Deleted.");
  tr.appendChild(acts);
  return tr;
}

async function refresh() {
  try {
    await loadFolders();
    const msgs = await api("/api/messages?folder=" + encodeURIComponent(current));
    const body = $("messages").tBodies[0];
    body.replaceChildren(...msgs.map(row));
    if (msgs.length === 0) { status("No messages in " + current + "."); }
  } catch (e) {
    status("Failed: " + e.message);
  }
}

async function start() {
  const s = await api("/api/session");
  csrf = s.csrf;
  $("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
    location.href = "/";
  });
  await refresh();
  // New messages (and changes made elsewhere) appear without reloading.
  const events = new EventSource("/events");
  events.addEventListener("change", () => { refresh(); });
}

start();

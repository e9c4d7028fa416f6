// Telltale capture component (Streamlit components v2, no build step).
//
// Privacy: key names and characters are read here, in the browser, only to classify a key
// (letter, digit, ...) and to check locally whether an enrolment repetition matches the phrase.
// Only timings, key classes, positions, pointer coordinates and field names ever leave the page.
//
// Modes (data.mode): "enrol" (type data.phrase data.repetitions times), "login" (username +
// password form), "pad" (free typing and mouse activity). Events go to Python in batches about
// once a second, and at once on submit / end of a repetition, as a trigger value "batch":
//   {mount_id, batch_seq, mode, user_id, sessions: {session_id: [event, ...]}, ...}
// each event {seq, t_ms, type, key_class, press_id, pos, field, x, y, button}.

const FLUSH_MS = 1000;
const MAX_EVENTS = 4000;   // per batch; the server refuses more than 5,000
const MAX_SESSIONS = 8;    // per batch; the server refuses more

function keyClass(event) {
  const key = event.key;
  if (key === " ") return "space";
  if (key === "Backspace") return "backspace";
  if (key === "Delete") return "delete";
  if (key === "Enter") return "enter";
  if (key === "Tab") return "tab";
  if (key === "Shift") return "shift";
  if (key === "Control") return "ctrl";
  if (key === "Alt" || key === "AltGraph") return "alt";
  if (key === "Meta" || key === "OS") return "meta";
  if (key && key.startsWith("Arrow")) return "arrow";
  if (key && key.length === 1) {
    if (/\p{L}/u.test(key)) return "letter";
    if (/\p{N}/u.test(key)) return "digit";
    return "punct";
  }
  return "other";
}

function buttonName(button) {
  return ["left", "middle", "right"][button] || "other";
}

function randomId() {
  return Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const mode = data.mode;
  const root = parentElement.querySelector(".telltale-capture") || document.createElement("div");
  root.className = "telltale-capture";
  if (!root.parentElement) parentElement.appendChild(root);
  // Streamlit may call this function again for the same element (new arguments): the running
  // instance goes on, sending with the newest setTriggerValue, and the same cleanup is handed back.
  const link = (root.__telltale = root.__telltale || {});
  link.setTriggerValue = setTriggerValue;
  // Counts only, for diagnosing a stalled capture (the browser test prints them when it fails).
  const status = ((window.__telltaleCapture = window.__telltaleCapture || {})[mode] =
    window.__telltaleCapture[mode] || { calls: 0, flushes: 0, batches_sent: 0, events_pending: 0 });
  status.calls += 1;
  if (root.dataset.mounted === data.mount_key) return link.cleanup; // already running for this mount
  root.dataset.mounted = data.mount_key;
  root.innerHTML = "";

  const mountId = randomId();
  let batchSeq = 0;
  let pending = {};          // session_id -> [events]
  let seqBySession = {};     // session_id -> next seq
  let pressCounter = 0;
  let origin = performance.now();
  const originOf = {};       // session_id -> performance.now() at its t_ms = 0
  const lastTOf = {};        // session_id -> t_ms of its latest event
  let session = null;        // current session id
  let position = 0;          // ordinal of the next keystroke in the fixed-text field of this session
  let lastT = 0;             // t_ms of the session's latest event
  const pressOfKey = new Map(); // physical key code -> press id (local only, never sent)

  function newSession(suffix) {
    session = `${data.session_prefix}-${mountId}-${suffix}`;
    seqBySession[session] = 0;
    position = 0;
    lastT = 0;
    origin = performance.now();
    originOf[session] = origin;
    pressOfKey.clear();
    return session;
  }

  // `at` is the DOM event's timeStamp (when the browser received the input, same clock as
  // performance.now()), so a busy page that runs a handler late does not distort the timings.
  function record(event, at) {
    if (!session) return;
    const stamp = typeof at === "number" && at > 0 ? at : performance.now();
    // Events of different kinds can be stamped a hair out of order; t_ms never goes backwards.
    const t = Math.max(0, lastT, Math.round((stamp - origin) * 1000) / 1000);
    lastT = t;
    lastTOf[session] = t;
    const full = Object.assign(
      { seq: seqBySession[session]++, t_ms: t, key_class: null, press_id: null, pos: null,
        field: null, x: null, y: null, button: null },
      event,
    );
    (pending[session] = pending[session] || []).push(full);
  }

  // Delivery is at least once: events stay pending until the server acknowledges them, and every
  // flush re-sends what is still pending; the server skips what it already stored. A lost trigger
  // costs a second, never data. Acks (session -> last stored seq) come through a separate, invisible
  // ack component (ack.js) that leaves them on window: changing this component's own data would
  // re-render it and take the keyboard focus away from the person typing.
  function acknowledge(ack) {
    for (const [sessionId, lastSeq] of Object.entries(ack)) {
      if (!pending[sessionId]) continue;
      pending[sessionId] = pending[sessionId].filter((e) => e.seq > lastSeq);
      if (pending[sessionId].length === 0) {
        delete pending[sessionId];
        if (sessionId !== session) { delete originOf[sessionId]; delete lastTOf[sessionId]; }
      }
    }
  }
  function flush() {
    acknowledge(((window.__telltaleAcks || {})[data.mount_key]) || {});
    status.flushes += 1;
    status.events_pending = Object.values(pending).reduce((sum, events) => sum + events.length, 0);
    const sessions = {};
    const origins = {};
    // Both clocks are read now: the server dates a session by sent_at_ms - origins[session] (time
    // elapsed since its t_ms = 0, on the page's monotonic clock), so a wrong wall clock here cannot shift it.
    const sentAt = Date.now();
    const elapsedNow = performance.now();
    let count = 0;
    for (const [sessionId, events] of Object.entries(pending)) {
      // Enrolment sends a repetition only once it is finished (a typo never leaves the page).
      if (mode === "enrol" && sessionId === session) continue;
      const room = MAX_EVENTS - count;
      if (room <= 0 || Object.keys(sessions).length >= MAX_SESSIONS) break;
      sessions[sessionId] = events.slice(0, room);
      // an input event stamped a hair after this flush's clock reading still lies before the send
      origins[sessionId] = sentAt - Math.max(elapsedNow - originOf[sessionId], lastTOf[sessionId] || 0);
      count += sessions[sessionId].length;
    }
    if (count === 0) return;
    batchSeq += 1;
    status.batches_sent = batchSeq;
    link.setTriggerValue("batch", { mount_id: mountId, batch_seq: batchSeq, mode: mode, user_id: data.user_id,
                               sessions: sessions, sent_at_ms: sentAt, origins: origins });
  }
  const timer = setInterval(flush, FLUSH_MS);

  function discard(sessionId) {
    delete pending[sessionId];
  }

  function keyHandlers(input, fieldName, positional) {
    input.addEventListener("focus", (event) => {
      if (positional) position = 0;
      record({ type: "field_enter", field: fieldName }, event.timeStamp);
    });
    input.addEventListener("blur", (event) => record({ type: "field_leave", field: fieldName }, event.timeStamp));
    input.addEventListener("keydown", (event) => {
      if (event.repeat) return;
      const press = ++pressCounter;
      pressOfKey.set(event.code || event.key, { press, pos: positional ? position++ : null,
                                                cls: keyClass(event) });
      const info = pressOfKey.get(event.code || event.key);
      record({ type: "key_down", key_class: info.cls, press_id: press, pos: info.pos, field: fieldName },
             event.timeStamp);
    });
    input.addEventListener("keyup", (event) => {
      const info = pressOfKey.get(event.code || event.key);
      if (!info) return;
      pressOfKey.delete(event.code || event.key);
      record({ type: "key_up", key_class: info.cls, press_id: info.press, pos: info.pos, field: fieldName },
             event.timeStamp);
    });
  }

  function pointerHandlers(area) {
    area.addEventListener("mousemove", (e) => {
      const box = area.getBoundingClientRect();
      record({ type: "mouse_move", x: e.clientX - box.left, y: e.clientY - box.top }, e.timeStamp);
    });
    area.addEventListener("mousedown", (e) => {
      const box = area.getBoundingClientRect();
      record({ type: "mouse_down", x: e.clientX - box.left, y: e.clientY - box.top, button: buttonName(e.button) },
             e.timeStamp);
    });
    area.addEventListener("mouseup", (e) => {
      const box = area.getBoundingClientRect();
      record({ type: "mouse_up", x: e.clientX - box.left, y: e.clientY - box.top, button: buttonName(e.button) },
             e.timeStamp);
    });
    area.addEventListener("wheel", (e) => {
      const box = area.getBoundingClientRect();
      record({ type: "wheel", x: e.clientX - box.left, y: e.clientY - box.top }, e.timeStamp);
    }, { passive: true });
  }

  // A repetition or a login ends on the keyup of Enter, so the Enter press stays whole.
  function onEnterUp(input, finish) {
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") event.preventDefault(); });
    input.addEventListener("keyup", (event) => { if (event.key === "Enter") finish(); });
  }

  if (mode === "enrol") {
    const target = data.phrase;
    let done = 0;
    let corrected = false;
    let presses = 0;
    root.innerHTML = `
      <p class="tt-prompt">Type <code class="tt-phrase"></code> and press Enter.</p>
      <input class="tt-input" name="enrol" autocomplete="off" spellcheck="false" />
      <p class="tt-progress"></p><p class="tt-note"></p>`;
    root.querySelector(".tt-phrase").textContent = target;
    const input = root.querySelector(".tt-input");
    const progress = root.querySelector(".tt-progress");
    const note = root.querySelector(".tt-note");
    const show = () => { progress.textContent = `${done} / ${data.repetitions}`; };
    const start = () => { newSession(`rep${done + 1}`); corrected = false; presses = 0; };
    show();
    start();
    keyHandlers(input, "password", true);
    input.addEventListener("keydown", (event) => {
      if (event.repeat) return;
      presses += 1;
      if (event.key === "Backspace" || event.key === "Delete") corrected = true;
    });
    onEnterUp(input, () => {
      // Checked here; the typed value never leaves the page.
      const clean = input.value === target && !corrected && presses === data.expected_keys;
      const finished = session;
      input.value = "";
      if (clean) {
        record({ type: "submit" });
        done += 1;
        note.textContent = "";
        session = null;   // finished: the next flush may send it
        flush();
      } else {
        discard(finished);
        note.textContent = "That repetition had a typo or a correction; please type it again.";
      }
      show();
      if (done >= data.repetitions) {
        // Not in the red note: the page says "Enrolment complete" (in green) once the last one is stored.
        input.disabled = true;
        note.textContent = "";
        session = null;
      } else {
        start();
      }
    });
  } else if (mode === "login") {
    root.innerHTML = `
      <form class="tt-form" autocomplete="off">
        <label>Username <input class="tt-username" name="username" spellcheck="false" /></label>
        <label>Password <input class="tt-password" name="password" type="password" /></label>
        <button type="button" class="tt-submit">Log in</button>
      </form>`;
    const form = root.querySelector(".tt-form");
    const password = root.querySelector(".tt-password");
    newSession(`login${Date.now().toString(36)}`);
    keyHandlers(root.querySelector(".tt-username"), "username", false);
    keyHandlers(password, "password", true);
    pointerHandlers(form);
    const submit = () => {
      record({ type: "submit" });
      flush();
      form.reset();
      newSession(`login${Date.now().toString(36)}`);
    };
    onEnterUp(password, submit);
    root.querySelector(".tt-submit").addEventListener("click", submit);
  } else {
    root.innerHTML = `
      <textarea class="tt-pad" rows="6" placeholder="Type anything here, move the mouse, click, drag and scroll."></textarea>
      <div class="tt-area">mouse area</div>`;
    newSession("pad");
    keyHandlers(root.querySelector(".tt-pad"), "pad", false);
    pointerHandlers(root);
  }
  const onFocus = () => record({ type: "focus" });
  const onBlur = () => record({ type: "blur" });
  window.addEventListener("focus", onFocus);
  window.addEventListener("blur", onBlur);

  link.cleanup = () => {
    delete root.dataset.mounted;  // unmounted: a later call starts afresh
    clearInterval(timer);
    window.removeEventListener("focus", onFocus);
    window.removeEventListener("blur", onBlur);
    flush();
  };
  return link.cleanup;
}

// The console's start: the session, then the views, then the live stream.
import { ApiError, call, setCsrf, whenSignedOut } from "./api.js";
import { Admin } from "./admin.js";
import { Doors } from "./doors.js";
import { Live } from "./live.js";
import { Tester } from "./tester.js";
import { timeText } from "./plain.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["doors", "live", "admin", "tester"];
// Background refreshes stop when nobody has touched the page for this long,
// so an unattended console does not keep polling (its live stream goes on).
const ACTIVE_MS = 5 * 60 * 1000;
let lastActivity = Date.now();
let live = null;

function signedOut(why) {
  if (live) live.stop();
  for (const view of VIEWS) $(`view-${view}`).hidden = true;
  $("tabs").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("signed-out").hidden = false;
  $("signed-out-why").textContent = why || "";
}

function show(view) {
  if (!VIEWS.includes(view) || document.querySelector(`#tabs a[data-view="${view}"]`).hidden) {
    view = "doors";
  }
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  $("status").textContent = ""; // a message belongs to the view it was said in
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function boot() {
  whenSignedOut((error) => signedOut(`The session ended (${error.message}).`));
  let session;
  try {
    session = await call("GET", "/v1/session", undefined, { quiet: true });
  } catch (error) {
    signedOut(error instanceof ApiError && error.status === 401 ? "" : error.message);
    return;
  }
  setCsrf(session.csrf_token);
  $("who").textContent = `Signed in as ${session.user} · until ${timeText(session.absolute_expires)}`;
  const signOut = $("sign-out");
  signOut.hidden = false;
  signOut.addEventListener("click", async () => {
    try {
      await call("DELETE", "/v1/session", undefined, { quiet: true });
    } finally {
      if (live) live.stop();
      location.replace("/console/sign-in#signed-out");
    }
  });
  let siteName = "";
  try {
    siteName = (await call("GET", "/healthz")).site;
  } catch {
    siteName = "";
  }
  $("site-name").textContent = siteName;

  const status = $("status");
  const doors = new Doors($("door-list"), $("degraded"));
  const admin = new Admin({ status, siteName: () => siteName, onChanged: () => doors.soon() });
  const tester = new Tester();
  live = new Live({
    table: $("live-table"), state: $("live-state"), filters: $("live-filters"),
    older: $("live-older"), announce: $("announce"),
    // Only what can change a door card: a change record, a card now waiting
    // for its code, an entry code (which ends a wait). A busy door's plain
    // badge reads do not make every console ask for the doors again.
    onEvent: (event) => {
      if (event.kind !== "decision" || event.result === "pending" || event.factor === "pin") {
        doors.soon();
      }
    },
    onEnded: async (reason) => {
      // Still signed in? Then pick up where the stream stopped; else say so.
      try {
        await call("GET", "/v1/session", undefined, { quiet: true });
      } catch {
        signedOut(`The live stream ended (${reason}); the session is over.`);
        return;
      }
      setTimeout(() => live.connect(), 1000);
    },
  });
  const list = await doors.refresh();
  for (const part of [admin, live, tester]) part.setDoors(list);
  $("tabs").hidden = false;
  if (await tester.load()) document.querySelector('#tabs a[data-view="tester"]').hidden = false;
  show(location.hash.slice(1));
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  for (const kind of ["pointerdown", "keydown"]) {
    document.addEventListener(kind, () => { lastActivity = Date.now(); }, { passive: true });
  }
  // Schedules move on their own and waiting steps run out: refresh now and then.
  setInterval(() => {
    if (!document.hidden && Date.now() - lastActivity < ACTIVE_MS) doors.soon();
  }, 10000);
  await live.start();
}

boot();

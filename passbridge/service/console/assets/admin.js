// Administration: overrides and lockdown (each after a confirmation step),
// lockouts, enrolment codes with their QR code, and reloading the site file.
import { ApiError, call, part } from "./api.js";
import { duration, el, stateText, timeText } from "./plain.js";

const dialog = () => document.getElementById("confirm");

// Ask before a change; resolves true only for "Confirm".
export function confirmStep(text, okLabel = "Confirm") {
  const box = dialog();
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    box.addEventListener("close", () => resolve(box.returnValue === "ok"), { once: true });
    box.returnValue = "";
    box.showModal();
  });
}

export function problemText(error) {
  if (!(error instanceof ApiError)) return String(error);
  const problems = error.body && error.body.error && error.body.error.problems;
  if (problems && problems.length) {
    return problems.map((p) => `${p.place ? p.place + ": " : ""}${p.message}`).join("\n");
  }
  return error.message;
}

function fillDoors(select, doors, first) {
  const chosen = select.value;
  select.replaceChildren(...(first ? [first] : []),
    ...doors.map((d) => el("option", { value: d.id }, d.name || d.id)));
  if (chosen) select.value = chosen;
}

export class Admin {
  constructor({ status, siteName, onChanged }) {
    this.status = status;
    this.siteName = siteName;
    this.onChanged = onChanged;
    this.override = document.getElementById("override-form");
    this.lockdown = document.getElementById("lockdown-form");
    this.override.addEventListener("submit", (e) => this.setOverride(e));
    this.lockdown.addEventListener("submit", (e) => this.setLockdown(e));
    document.getElementById("lockouts-refresh").addEventListener("click", () => this.lockouts());
    document.getElementById("enrol-form").addEventListener("submit", (e) => this.enrol(e));
    const reload = document.getElementById("reload-form");
    reload.addEventListener("submit", (e) => this.reload(e));
    reload.elements.file.addEventListener("change", async () => {
      const file = reload.elements.file.files[0];
      if (file) reload.elements.document.value = await file.text();
    });
  }

  setDoors(doors) {
    this.doors = doors;
    fillDoors(this.override.elements.door, doors);
    fillDoors(this.lockdown.elements.door, doors, el("option", { value: "" }, "The whole site"));
  }

  say(text) {
    this.status.textContent = text;
  }

  async setOverride(event) {
    event.preventDefault();
    const f = this.override.elements;
    const door = f.door.value;
    const state = f.state.value || null;
    const minutes = Number(f.minutes.value);
    const text = state ? `Set door ${door} to “${stateText(state)}” for ${minutes} minutes?`
      : `End the override of door ${door}?`;
    if (!(await confirmStep(text, state ? "Set override" : "End override"))) return;
    try {
      const body = state ? { state, minutes } : { state: null };
      const after = await call("PUT", `/v1/doors/${part(door)}/override`, body);
      this.say(`Door ${door} is now “${stateText(after.state)}”.`);
      this.onChanged();
    } catch (error) {
      this.say(`Override not set: ${problemText(error)}`);
    }
  }

  async setLockdown(event) {
    event.preventDefault();
    const active = event.submitter ? event.submitter.value === "on" : true;
    const door = this.lockdown.elements.door.value || null;
    const where = door ? `door ${door}` : "the whole site";
    const text = active ? `Lock down ${where}? Nobody gets in until it ends.`
      : `End the lockdown of ${where}?`;
    if (!(await confirmStep(text, active ? "Start lockdown" : "End lockdown"))) return;
    try {
      const now = await call("PUT", "/v1/site/lockdown", { active, door });
      const doors = now.doors.length ? ` Doors in lockdown: ${now.doors.join(", ")}.` : "";
      this.say(`Site lockdown ${now.site ? "on" : "off"}.${doors}`);
      this.onChanged();
    } catch (error) {
      this.say(`Lockdown not changed: ${problemText(error)}`);
    }
  }

  async lockouts() {
    const list = document.getElementById("lockout-list");
    let data;
    try {
      data = await call("GET", "/v1/lockouts");
    } catch (error) {
      list.replaceChildren(el("li", {}, `Cannot list lockouts: ${problemText(error)}`));
      return;
    }
    const left = (lockout) => `for ${duration(Math.ceil(lockout.seconds_left))} more ` +
      `(until ${timeText(lockout.until)})`;
    const users = (data.users || []).map((lockout) => {
      const clear = el("button", { type: "button" }, `Clear ${lockout.user} at ${lockout.door}`);
      clear.addEventListener("click", () => this.clearLockout(lockout.door, lockout.user));
      return el("li", { "data-door": lockout.door, "data-user": lockout.user },
        `${lockout.user} at ${lockout.door}, ${left(lockout)} `, clear);
    });
    const keypads = (data.keypads || []).map((lockout) => el("li", { "data-door": lockout.door },
      `Keypad at ${lockout.door} (${lockout.side} side): codes alone refused ${left(lockout)}`));
    const items = [...users, ...keypads];
    list.replaceChildren(...(items.length ? items : [el("li", {}, "Nobody is locked out.")]));
  }

  async clearLockout(door, user) {
    if (!(await confirmStep(`Clear ${user}'s lockout at door ${door}?`, "Clear lockout"))) return;
    try {
      await call("DELETE", `/v1/doors/${part(door)}/lockouts/${part(user)}`);
      this.say(`${user} may use door ${door} again.`);
    } catch (error) {
      this.say(`Lockout not cleared: ${problemText(error)}`);
    }
    await this.lockouts();
  }

  async enrol(event) {
    event.preventDefault();
    const user = event.target.elements.user.value.trim();
    const result = document.getElementById("enrol-result");
    try {
      const made = await call("POST", `/v1/users/${part(user)}/enrolments`, {});
      document.getElementById("enrol-code").textContent = made.code;
      document.getElementById("enrol-expires").textContent =
        `For ${user}; works once, until ${timeText(made.expires)}.`;
      // What the phone app scans: where to redeem it, for which site, the code.
      const scan = JSON.stringify({ service: location.origin, site: this.siteName(), code: made.code });
      const svg = await call("POST", "/console/qr", { text: scan }, { raw: true, accept: "image/svg+xml" });
      const parsed = new DOMParser().parseFromString(await svg.text(), "image/svg+xml");
      const figure = document.getElementById("enrol-qr");
      figure.replaceChildren(document.importNode(parsed.documentElement, true),
        el("figcaption", {}, "Scan with the passbridge app"));
      result.hidden = false;
      this.say(`Enrolment code made for ${user}.`);
    } catch (error) {
      result.hidden = true;
      this.say(`No enrolment code: ${problemText(error)}`);
    }
  }

  async reload(event) {
    event.preventDefault();
    const text = event.target.elements.document.value;
    const out = document.getElementById("reload-result");
    if (!text.trim()) {
      out.textContent = "Paste or upload a site file first.";
      return;
    }
    if (!(await confirmStep("Check this site file and, if it is valid, switch the service to it now?",
      "Reload"))) return;
    try {
      const outcome = await call("PUT", "/v1/site", text, { contentType: "application/yaml" });
      out.replaceChildren(el("p", {}, "Reloaded."), el("pre", {}, JSON.stringify(outcome, null, 2)));
      this.onChanged();
    } catch (error) {
      out.replaceChildren(el("p", {}, "Not reloaded; the service keeps the site it had:"),
        el("pre", {}, problemText(error)));
    }
  }
}

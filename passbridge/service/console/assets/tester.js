// The tester panel (only where the service runs with --simulate): simulated
// phones tap, approach and ask; badges and an on-screen keypad; scenario files.
import { call, part } from "./api.js";
import { el, reasonText, resultText, stateText, timeText } from "./plain.js";
import { problemText } from "./admin.js";

const MAX_CODE = 32;

export class Tester {
  constructor() {
    this.where = document.getElementById("tester-where");
    this.answer = document.getElementById("tester-answer");
    this.display = document.getElementById("keypad-display");
    this.code = "";
    document.getElementById("tap-nfc").addEventListener("click", () => this.phone("nfc"));
    document.getElementById("tap-ble").addEventListener("click", () => this.phone("ble"));
    document.getElementById("tap-nearby").addEventListener("click", () => this.phone("nearby"));
    document.getElementById("badge-form").addEventListener("submit", (e) => this.badge(e));
    const keypad = document.getElementById("keypad");
    keypad.addEventListener("click", (e) => {
      const key = e.target.closest("button[data-key]");
      if (key) this.key(key.dataset.key);
    });
    keypad.addEventListener("keydown", (e) => {
      if (/^[0-9]$/.test(e.key)) this.key(e.key);
      else if (e.key === "Backspace" || e.key === "Escape") this.key("clear");
      else return;
      e.preventDefault();
    });
    document.getElementById("scenario-form").addEventListener("submit", (e) => this.scenario(e));
  }

  // Resolves to true when this service has simulated radios.
  async load() {
    let sim;
    try {
      sim = await call("GET", "/v1/sim", undefined, { quiet: true });
    } catch {
      return false;
    }
    const phones = this.where.elements.phone;
    phones.replaceChildren(...sim.phones.map((p) => el("option", { value: p }, p)));
    document.getElementById("tap-nfc").disabled = !sim.simulated.nfc;
    document.getElementById("tap-ble").disabled = !sim.simulated.ble;
    document.getElementById("tap-nearby").disabled = !sim.simulated.ble;
    return true;
  }

  setDoors(doors) {
    const select = this.where.elements.door;
    const chosen = select.value;
    select.replaceChildren(...doors.map((d) => el("option", { value: d.id }, d.name || d.id)));
    if (chosen) select.value = chosen;
  }

  place() {
    const f = this.where.elements;
    return { door: f.door.value, side: f.side.value, phone: f.phone.value };
  }

  show(decision) {
    const state = decision.state ? ` (door: ${stateText(decision.state)})` : "";
    this.answer.textContent =
      `${resultText(decision.result)}: ${reasonText(decision.reason, decision.detail)}${state}`;
    this.answer.dataset.result = decision.result;
  }

  async send(path, body) {
    this.answer.textContent = "…";
    try {
      this.show(await call("POST", path, body));
    } catch (error) {
      this.answer.textContent = `Not sent: ${problemText(error)}`;
      this.answer.dataset.result = "error";
    }
  }

  async phone(how) {
    const { door, side, phone } = this.place();
    const rssi = Number(document.getElementById("rssi").value);
    const body = how === "nfc" ? { phone, side } : { phone, side, rssi };
    await this.send(`/v1/sim/doors/${part(door)}/${how}`, body);
  }

  async badge(event) {
    event.preventDefault();
    const { door, side } = this.place();
    await this.send(`/v1/sim/doors/${part(door)}/card`,
      { number: event.target.elements.number.value.trim(), side });
  }

  async key(key) {
    if (key === "clear") {
      this.code = "";
    } else if (key === "enter") {
      if (!this.code) return;
      const code = this.code;
      this.code = "";
      this.display.textContent = "";
      const { door, side } = this.place();
      await this.send(`/v1/sim/doors/${part(door)}/keypad`, { code, side });
      return;
    } else if (this.code.length < MAX_CODE) {
      this.code += key;
    }
    // Never the digits themselves: a keypad shows dots.
    this.display.textContent = "•".repeat(this.code.length);
  }

  async scenario(event) {
    event.preventDefault();
    const file = event.target.elements.file.files[0];
    const summary = document.getElementById("scenario-summary");
    const table = document.getElementById("scenario-table");
    if (!file) return;
    summary.textContent = `Running ${file.name}…`;
    table.hidden = true;
    let report;
    try {
      report = await call("POST", "/v1/sim/scenario", await file.text(),
        { contentType: "application/yaml" });
    } catch (error) {
      summary.textContent = `Not run: ${problemText(error)}`;
      return;
    }
    const rows = report.steps.map((step) => {
      const got = step.error ? `error: ${step.error}` : step.result
        ? `${resultText(step.result)}: ${reasonText(step.reason)}${step.user ? ", " + step.user : ""}`
        : step.state ? `door ${stateText(step.state)}` : "done";
      const expected = step.expected
        ? Object.entries(step.expected).map(([k, v]) => `${k}=${v}`).join(", ") : "";
      const ok = step.ok === null ? "–" : step.ok ? "yes" : "NO";
      return el("tr", { class: step.ok === false ? "failed" : "" },
        el("td", {}, step.index), el("td", {}, timeText(step.at)), el("td", {}, step.step),
        el("td", {}, got), el("td", {}, expected), el("td", {}, ok));
    });
    table.tBodies[0].replaceChildren(...rows);
    table.hidden = false;
    summary.textContent = `${report.name}: ${report.passed ? "passed" : "FAILED"} ` +
      `(${report.steps.length} steps)`;
  }
}

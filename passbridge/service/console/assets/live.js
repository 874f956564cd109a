// Live decisions: the audit log's server-sent events, newest first, with
// filters, and older records a page at a time from GET /v1/events.
import { call } from "./api.js";
import {
  changeLine, decisionLine, el, factorText, factors, reasonText, resultText, stateText, timeText,
} from "./plain.js";

const PAGE = 50;
const KEEP = 1000;
// Every kind of audit record the stream names (EventSource needs each by name).
const KINDS = ["decision", "override", "lockdown", "lockout_cleared", "site_reloaded",
  "site_reload_refused", "enrolment_code_issued", "phone_enrolled", "phone_revoked",
  "console_link_issued", "session_started", "session_ended"];

export class Live {
  constructor({ table, state, filters, older, announce, onEvent, onEnded }) {
    this.body = table.tBodies[0];
    this.state = state;
    this.filters = filters;
    this.olderButton = older;
    this.announce = announce;
    this.onEvent = onEvent;
    this.onEnded = onEnded;
    this.oldest = null; // lowest seq shown
    this.last = 0; // highest seq received
    this.source = null;
    this.spoken = null;
    const factorSelect = filters.elements.factor;
    for (const factor of factors()) factorSelect.append(el("option", { value: factor }, factorText(factor)));
    filters.addEventListener("input", () => this.applyFilters());
    filters.addEventListener("submit", (event) => event.preventDefault());
    older.addEventListener("click", () => this.older());
  }

  setDoors(doors) {
    const select = this.filters.elements.door;
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "any"),
      ...doors.map((d) => el("option", { value: d.id }, d.name || d.id)));
    select.value = chosen;
  }

  async start() {
    let head = 0;
    try {
      head = (await call("GET", "/v1/audit/head")).seq;
    } catch {
      head = 0; // a log without a chain: start from the beginning
    }
    this.last = head;
    this.oldest = head + 1;
    await this.older();
    this.connect();
  }

  connect() {
    if (this.source) this.source.close();
    const source = new EventSource(`/v1/events?stream=1&after=${this.last}`);
    this.source = source;
    source.onopen = () => { this.state.textContent = "Live: new decisions appear at the top."; };
    source.onerror = () => {
      this.state.textContent = source.readyState === EventSource.CLOSED
        ? "Live stream stopped." : "Reconnecting…";
      if (source.readyState === EventSource.CLOSED) this.onEnded("closed");
    };
    for (const kind of KINDS) {
      source.addEventListener(kind, (message) => this.received(JSON.parse(message.data)));
    }
    source.addEventListener("end", (message) => {
      source.close();
      const reason = JSON.parse(message.data).reason;
      this.state.textContent = "Live stream ended; reconnecting…";
      this.onEnded(reason);
    });
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
  }

  received(event) {
    if (event.seq <= this.last) return;
    this.last = event.seq;
    this.body.prepend(this.row(event));
    while (this.body.rows.length > KEEP) this.body.lastElementChild.remove();
    this.applyFilters();
    if (event.kind === "decision") this.speak(decisionLine(event));
    this.onEvent(event);
  }

  // One line at a time for screen readers, not the whole table.
  speak(text) {
    this.announce.textContent = text;
  }

  async older() {
    if (this.oldest <= 1) {
      this.olderButton.hidden = true;
      return;
    }
    const after = Math.max(0, this.oldest - 1 - PAGE);
    const data = await call("GET", `/v1/events?after=${after}&limit=${this.oldest - 1 - after}`);
    const page = data.events.filter((e) => e.seq < this.oldest);
    for (const event of page.reverse()) this.body.append(this.row(event));
    this.oldest = after + 1;
    this.olderButton.hidden = this.oldest <= 1;
    this.applyFilters();
  }

  row(event) {
    const decision = event.kind === "decision";
    const result = decision ? event.result : "change";
    const cells = decision ? [
      el("td", { class: `result ${result}` }, resultText(result)),
      el("td", {}, reasonText(event.reason, event.detail)),
      el("td", {}, event.door + (event.side === "out" ? " (out)" : "")),
      el("td", {}, event.user || ""),
      el("td", {}, factorText(event.factor)),
      el("td", {}, stateText(event.state)),
    ] : [
      el("td", { class: "result change" }, "Change"),
      el("td", { colspan: 5 }, changeLine(event)),
    ];
    const tr = el("tr", {
      "data-seq": event.seq, "data-result": result, "data-door": event.door || "",
      "data-user": event.user || "", "data-factor": event.factor || "",
    }, el("td", {}, timeText(event.at)), ...cells);
    return tr;
  }

  applyFilters() {
    const f = this.filters.elements;
    const want = { result: f.result.value, door: f.door.value, factor: f.factor.value };
    const user = f.user.value.trim().toLowerCase();
    for (const row of this.body.rows) {
      const d = row.dataset;
      row.hidden = (want.result && d.result !== want.result) ||
        (want.door && d.door !== want.door) || (want.factor && d.factor !== want.factor) ||
        (user && !d.user.toLowerCase().includes(user));
    }
  }
}

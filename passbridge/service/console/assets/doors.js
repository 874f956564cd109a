// The doors view: each door's state now, what set it, two-factor, waiting
// entry-code steps, and what the door has (reader, keypad, in/out).
import { call } from "./api.js";
import { el, factorText, sourceText, stateText, timeText } from "./plain.js";

export class Doors {
  constructor(list, degraded) {
    this.list = list;
    this.degraded = degraded;
    this.doors = [];
    this.pending = null;
  }

  // Refresh soon (several events in a burst make one request).
  soon() {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.refresh().catch(() => {});
    }, 250);
  }

  async refresh() {
    const [data, health] = await Promise.all([
      call("GET", "/v1/doors"),
      call("GET", "/healthz").catch(() => null),
    ]);
    this.doors = data.doors;
    this.render();
    const lines = health && health.degraded ? Object.entries(health.degraded) : [];
    this.degraded.hidden = lines.length === 0;
    this.degraded.textContent = lines.map(([name, line]) => `${name}: ${line}`).join("; ");
    return this.doors;
  }

  render() {
    const items = this.doors.map((door) => {
      const twoFactor = door.state === "two_factor";
      const has = [door.reader ? "badge reader" : null, door.keypad ? "keypad" : null,
        door.in_out ? "in and out sides" : null].filter(Boolean).join(", ") || "no devices";
      let setBy = sourceText(door.state_source);
      if (door.override && door.state_source === "override") {
        setBy += ` until ${timeText(door.override.ends_at)}`;
      }
      const pending = (door.pending || []).map((step) =>
        el("li", { class: "pending" },
          `Entry code needed: ${step.user} (${factorText(step.factor)}, ${step.side} side), ` +
          `${step.seconds_left} s left`));
      return el("li", { class: `door state-${door.state}`, "data-door": door.id },
        el("h3", {}, door.name || door.id, door.name ? el("span", { class: "id" }, ` ${door.id}`) : null),
        el("p", { class: "state" }, el("strong", { "data-field": "state" }, stateText(door.state)),
          " · set by ", el("span", { "data-field": "source" }, setBy)),
        el("p", { "data-field": "two-factor" },
          `Two-factor ${twoFactor ? "on" : "off"}` +
          (door.strict_two_factor ? " (strict: phones alone never open it)" : "")),
        door.lockdown ? el("p", { class: "warning" }, "Lockdown in force") : null,
        pending.length ? el("ul", { class: "plain", "aria-label": "Waiting steps" }, ...pending)
          : null,
        ...(door.wired_readers || []).map((reader) => el("p", {
          class: reader.online ? "hint" : "warning", "data-field": "wired-reader",
        }, `Wired reader (${reader.side} side) ${reader.online ? "online" : "offline"}`)),
        el("p", { class: "hint" }, has));
    });
    this.list.replaceChildren(...items);
  }
}

// Plain language for what the service says, from the one table the service
// makes out of its own enums (words.js, made from console/reasons.py).
import { WORDS } from "./words.js";

export function duration(seconds) {
  if (seconds < 60) return seconds === 1 ? "1 second" : `${seconds} seconds`;
  const minutes = Math.round(seconds / 60);
  return minutes === 1 ? "1 minute" : `${minutes} minutes`;
}

export function reasonText(reason, detail) {
  let text = WORDS.reasons[reason] || reason;
  if (reason === "locked_out" && detail) {
    const left = /^(\d+) s of lockout left/.exec(detail);
    if (left) text += " for " + duration(Number(left[1]));
  }
  return text;
}

export const resultText = (result) => WORDS.results[result] || result;
export const stateText = (state) => (state ? WORDS.states[state] || state : "");
export const factorText = (factor) => (factor ? WORDS.factors[factor] || factor : "");
export const factors = () => Object.keys(WORDS.factors);

export function sourceText(source) {
  if (!source) return "";
  if (source.startsWith("schedule:")) return `schedule window “${source.slice(9)}”`;
  if (source.startsWith("exception:")) return `exception “${source.slice(10)}”`;
  const known = {
    override: "an override", lockdown: "a lockdown", default: "no schedule window (default)",
    internal_error: "an error working out the state",
  };
  return known[source] || source;
}

// One line for a person and for screen readers.
export function decisionLine(event) {
  const who = event.user ? `, ${event.user}` : "";
  const side = event.side && event.side !== "in" ? ` (${event.side})` : "";
  return `${resultText(event.result)}: ${reasonText(event.reason, event.detail)} at ` +
    `${event.door}${side}${who}`;
}

export function changeLine(event) {
  const p = event.payload || {};
  if (event.kind === "override") {
    return (p.state ? `Override: ${p.door} ${stateText(p.state)} for ${p.minutes} min`
      : `Override ended: ${p.door}`) + (p.actor ? ` by ${p.actor}` : "");
  }
  if (event.kind === "lockdown") {
    const where = p.door ? p.door : "whole site";
    return `Lockdown ${p.active ? "started" : "ended"}: ${where}` + (p.actor ? ` by ${p.actor}` : "");
  }
  const sessionOnly = ["console_link_issued", "session_started", "session_ended"];
  const who = p.actor && !sessionOnly.includes(event.kind) ? ` by ${p.actor}` : "";
  const words = {
    lockout_cleared: () => `Lockout cleared: ${p.user} at ${p.door}`,
    site_reloaded: () => `Site reloaded: revision ${p.revision || p.new_revision || ""}`,
    site_reload_refused: () => `Site reload refused (${p.problem_count || "some"} problems)`,
    enrolment_code_issued: () => `Enrolment code made for ${p.user}`,
    phone_enrolled: () => `Phone enrolled: ${p.phone} for ${p.user}`,
    phone_revoked: () => `Phone revoked: ${p.phone}`,
    console_link_issued: () => `Console sign-in link made for ${p.user}`,
    session_started: () => `${p.user} signed in to the console`,
    session_ended: () => `${p.user} signed out of the console`,
  }[event.kind];
  return (words ? words() : event.kind.replaceAll("_", " ")) + who;
}

export function timeText(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? iso : at.toLocaleTimeString();
}

// Build an element: el("td", {class: "x"}, "text", child, ...).
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

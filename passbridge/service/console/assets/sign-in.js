// /console/sign-in#token=...: the token is in the fragment, so it never
// reaches a server log or a Referer; it is taken off the address bar at once
// and redeemed for a session cookie.
const status = document.getElementById("sign-in-status");
const help = document.getElementById("sign-in-help");

function fail(text) {
  status.textContent = text;
  help.hidden = false;
}

async function signIn() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  history.replaceState(null, "", location.pathname);
  if (fragment.get("signed-out") !== null) {
    status.textContent = "You are signed out.";
    help.hidden = false;
    return;
  }
  if (!token) {
    fail("This address has no sign-in token.");
    return;
  }
  let response;
  try {
    response = await fetch("/v1/session", {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token }),
    });
  } catch (error) {
    fail("The service cannot be reached: " + error.message);
    return;
  }
  if (response.ok) {
    status.textContent = "Signed in. Opening the console…";
    location.replace("/console");
    return;
  }
  let message = "";
  try {
    message = (await response.json()).error.message;
  } catch {
    message = response.statusText;
  }
  fail(`This sign-in link cannot be used: it has expired or was used already (${message}).`);
}

signIn();

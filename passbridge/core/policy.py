"""Every number the contract fixes, in one place, each with why.

The contract is ``shared/spec`` (rules.md, interfaces.md, scenarios.md);
where it left a number open, docs/decisions.md says what we chose. Code
that enforces one of these imports it from here: the core, the site and
scenario file models, the service and the radios' bridges. Operational
settings that an operator tunes (HTTP limits, Bluetooth timing, NFC hold
times) are not contract numbers and stay with their adapters.
"""

from __future__ import annotations

# --- two-factor entry and lockouts (rules.md "Two-factor doors") -----------------

#: Wrong PINs in a row that lock a user out of two-factor entry at a door,
#: and a keypad out of PIN-only entry (rules.md "Keypad lockout").
WRONG_PINS_BEFORE_LOCKOUT = 5
#: The first lockout; each further one of the same user at the same door
#: (or of the same keypad) doubles it.
FIRST_LOCKOUT_SECONDS = 60.0
#: The doubling stops here: 15 min, long enough to stop guessing, short
#: enough that a forgetful owner is not shut out for the day.
LONGEST_LOCKOUT_SECONDS = 15 * 60.0

#: How long a PIN may follow its card, unless the door says otherwise.
PIN_TIMEOUT_DEFAULT = 15
#: The ``pin_timeout`` a door may set (seconds, inclusive).
PIN_TIMEOUT_RANGE = (3, 60)
#: An entry code's length in digits (inclusive): short codes are guessable,
#: and a keypad takes no more.
PIN_DIGITS = (4, 16)

# --- doors ------------------------------------------------------------------------

#: How long a granted door stays unlocked, unless the door says otherwise.
UNLOCK_SECONDS_DEFAULT = 5
#: The ``unlock_seconds`` a door may set (seconds, inclusive).
UNLOCK_SECONDS_RANGE = (1, 60)
#: The RSSI a phone must reach for Bluetooth unlock, unless the door says otherwise.
BLE_RSSI_MIN_DEFAULT = -60
#: RSSI values anyone may write (dBm, inclusive): what a radio can report.
RSSI_RANGE = (-127, 20)
#: A timed override lasts 1 minute to 7 days (docs/decisions.md): an
#: override nobody ends must still end within a week.
OVERRIDE_MINUTES_RANGE = (1, 7 * 24 * 60)

# --- Nearby evidence (interfaces.md "Nearby") -------------------------------------

#: The phone's rotating id must be heard at least this strong (dBm) ...
NEARBY_RSSI_MIN = -80
#: ... within this many seconds of the request, by a radio of that door.
NEARBY_WINDOW_SECONDS = 10.0

# --- signed tokens (interfaces.md "Factor tokens", docs/decisions.md) -------------

#: A factor token lives at most this long (``exp - iat``): a stolen one is
#: soon useless.
FACTOR_MAX_LIFETIME = 30.0
#: What the in-process bridge gives its tokens: well inside the cap, room
#: for a slow hand-off.
FACTOR_DEFAULT_LIFETIME = 10.0
#: A backend's remote-unlock request lives at most this long.
BACKEND_MAX_LIFETIME = 60.0
#: A phone's signed nearby request lives at most this long, like a backend's.
NEARBY_MAX_LIFETIME = 60.0
#: Clock skew forgiven on ``iat``, ``nbf`` and ``exp``; a seen ``jti`` is
#: kept this long past its ``exp`` too.
DEFAULT_LEEWAY = 5.0
#: A ``jti`` must hold 128 random bits: 22 characters of URL-safe base64 ...
MIN_JTI_CHARS = 22
#: ... and no more than a bound the replay record can afford to keep.
MAX_JTI_CHARS = 128
#: A string claim (user, door, credential) longer than this is no id of ours.
MAX_CLAIM_CHARS = 256
#: A token larger than this is refused before any parsing (no work for junk).
MAX_TOKEN_BYTES = 4096

# --- ids (scenarios.md "Site file") -------------------------------------------------

#: An id (site, door, user, phone, window, exception) has at most this many
#: characters: enough for any name, short enough for logs, paths and URLs.
ID_MAX_CHARS = 64

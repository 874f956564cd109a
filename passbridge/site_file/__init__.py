"""Site files: the hand-written YAML (or JSON) that says which doors, users and keys a site has.

People write these files, so the loader is strict and talkative: unknown keys,
wrong types and impossible combinations are all errors, every one found is
reported at once (file, key path such as ``doors[1].schedule[0].state``, and
what was expected), and a file with any error is rejected as a whole.

Choices made here, beyond the written format (scenarios.md):

- Schedule windows may carry an ``id``; a decision reports the window as
  ``schedule:<id>``. Without one, the window is named by its position in the
  door's ``schedule`` list, counting from 0 (``schedule:0`` is the first).
  Window names are unique per door. ``start``/``end`` default to ``00:00`` and
  ``24:00`` in windows as in exceptions. Days are ``mon`` .. ``sun`` (full
  English names and any letter case are accepted too).
- The zone must be an IANA name known to the tz database (not the host's
  ``localtime``); a wrong letter case gets a "did you mean".
- A door with ``in_out: true`` must not say ``reader: false``.
- Times are quoted ``"HH:MM"`` strings. YAML reads an unquoted ``19:00`` as the
  number 1140, and entry codes or badge numbers written as bare numbers lose
  their leading zeros, so numbers are refused there with a hint to quote them.
  Ids, badge numbers and phone ids are strings for the same reason.
- Two schedule windows of one door that share a wall-clock moment, or two
  exceptions of one door that could cover the same moment (repeats and
  ``until`` included), are errors: which one applied would be arbitrary.
  See ``core.schedule`` for how repeats fall on short months and leap days.
- ``revision`` is the first 12 hex digits of a SHA-256 over the canonical form
  of what was loaded (defaults filled in, key files read, extra scenario keys
  left out), so formatting and comments do not change it. Entry codes enter it
  only as their keyed hashes: a bare hash of a 4-digit code next to an
  otherwise known file could be brute-forced from the revision.

Where each rule lives: ``document`` reads the file (YAML/JSON errors with
their line, keys given twice); ``shape`` declares the file's shape once as
pydantic models (keys, types, choices, ranges, the id rule, references to
doors), from which come the JSON Schema (``passbridge schema``) and the first
check; ``shape_errors`` words that check's errors as placed problems (did
you mean, quote it); ``describe`` words a wrong value. What a shape cannot
say comes after, on the validated models, collected by ``checker``:
``header`` the time zone; ``doors`` duplicates and In/Out readers;
``schedule`` days, calendar dates, windows, exceptions and their overlaps;
``users`` badges and phones owned once, entry code hashes; ``trust`` the
public keys; ``revision`` the hash; ``site`` assembles them into a Site.
A file with shape problems gets all of them at once; the checks of meaning
run once the shape is right.
"""

from passbridge.site_file.document import load_document, parse_document
from passbridge.site_file.shape import KEY_ALGORITHMS
from passbridge.site_file.site import SITE_KEYS, load_site, parse_site, site_from_text

__all__ = [
    "KEY_ALGORITHMS",
    "SITE_KEYS",
    "load_document",
    "load_site",
    "parse_document",
    "parse_site",
    "site_from_text",
]

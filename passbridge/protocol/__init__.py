"""Sans-I/O protocol code: bytes in, bytes out, no sockets, threads or event loops.

Adapters (nfcpy, bleak) and simulators drive these state machines; tests drive
them directly.
"""

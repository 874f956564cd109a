"""I/O edges: nfcpy, bleak, aiohttp, SQLite. Protocol logic lives in passbridge.protocol."""

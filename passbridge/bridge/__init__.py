"""The bridge: turns what a radio path established into a factor for the core.

Each module here is production glue between an adapter (nfcpy, bleak,
aiohttp) and the DoorController; none of it knows about simulators.
"""

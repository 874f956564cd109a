"""The HTTP service: remote, nearby and wired inputs, admin, live events.

``runtime.Services`` holds the parts; ``app.create_app(services)`` turns them
into one aiohttp application, whoever built them (``serve`` or a scenario).
"""

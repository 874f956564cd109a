"""The fleet hub: audit from every site into PostgreSQL, remote unlock forwarded
to sites, signed configuration out to them (``passbridge hub``)."""

"""Fleet mode: many sites and one hub over NATS JetStream (issue 12).

``wire`` is the shared, pure contract (subjects, payloads, signed fleet
statements); ``site_link`` is the site's side; ``hub`` is the hub. Nothing
here is imported by a plain ``passbridge serve``: the nats import is lazy.
"""

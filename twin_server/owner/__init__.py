"""The owner's side of a twin: leads, unanswered questions, notifications and the owner's inbox.

``recorder``   records events (stored first), hands them to the notifiers after the turn
``toolbox``    the tools offered to an LLM that supports them (``record_contact``, ``record_unanswered_question``)
``detection``  the same events from plain text, for an LLM without tools
``delivery``   the bounded queue and worker thread that deliver to the notifiers
``routes``     ``/owner/...`` (behind ``TWIN_OWNER_KEYS``)
``inbox``      ``twin-server inbox``
``wiring``     settings, startup checks, and how an app gets all of it
"""

"""What the API and the workers share: settings, the job domain, adapters.

``core.domain`` is plain Python without I/O (states, admission, events);
``core.db``, ``core.storage`` and ``core.executors`` are adapters behind small
interfaces; ``core.services`` holds the use cases that entrypoints call.
"""

"""The ``quorate`` command: the agent, cluster inspection and operations,
and a local cluster for development (``quorate up`` / ``quorate down``)."""

"""Leader-only controllers: groups of instances kept at their declared
state, the managers included (docs/manager.md). The controller lives in
``quorate.manager.controller``; it is not imported here, so the CLI can use
the specs without loading the runtime."""

"""The garbage collector in long-running processes.

A service process holds a large, long-lived heap: models, dictionaries, the topic matcher,
the near-duplicate memory. CPython's full collections walk all of it, and with that heap a
full pass took 100-180 ms in the web process at 1,000 pushed posts/s, about once every few
seconds: every request and alert in flight waited for it. `settle_heap()`, called once the
process has loaded what it keeps (after start-up, before serving), moves all of that into
the permanent generation, so later passes only walk what was allocated since.
"""

from __future__ import annotations

import gc


def settle_heap() -> int:
    """Collect once, then exempt every surviving object from later passes; returns how many.

    Only for process entry points: objects frozen here are never examined again, so a cycle
    among them that later becomes garbage is never freed (start-up objects live as long as
    the process anyway).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

"""Windows: how a grouped stream's records are aggregated per key and per period of event time.

```python
from processor.windows import TumblingWindows

clicks.group_by_key().windowed_by(TumblingWindows(size_ms=60_000, grace_ms=5_000), emit="final")
```

See `spec` for the window kinds and when a window closes, `serde` for the bytes of a windowed
key.
"""

from processor.windows.serde import WindowedSerde
from processor.windows.spec import (
    HoppingWindows,
    JoinWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    Windowed,
    Windows,
)

__all__ = [
    "HoppingWindows",
    "JoinWindows",
    "SessionWindows",
    "SlidingWindows",
    "TumblingWindows",
    "Windowed",
    "WindowedSerde",
    "Windows",
]

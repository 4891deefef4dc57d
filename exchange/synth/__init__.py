"""The synthetic city: a deterministic population and every department's native sources.

`exchange.synth.city.generate_city` is the entry point. This package module stays light
(no numpy, no Faker) so the CLI can read its defaults without paying for them.
"""

from __future__ import annotations

import datetime as dt

DEFAULT_TODAY = dt.date(2026, 6, 30)
MANIFEST = "faults.jsonl"
SUMMARY = "city.json"

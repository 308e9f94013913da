"""How many cases the property-based tests tried in this session (printed in the test summary)."""

COUNTS: dict[str, int] = {}


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1

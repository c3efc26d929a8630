"""What a hostile input may come to, shared by the corpus modules of this folder.

Each corpus is a table of `Case`s: a name, the input, and the one outcome it must have.
`Tally` records what each case actually came to and fails with every mismatch listed at
once (a corpus is read as a whole), then prints the counts per outcome for the notes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The outcomes, as counted in the notes.
DEAD_LETTERED = "dead-lettered"  # to <prefix>.dlq.> with Stormd-Error saying why
PROCESSED = "processed"  # a control: a valid input that must still be handled
HTTP_4XX = "refused with 4xx"  # an HTTP request answered 400/401/404/413/...
CONFIG_ERROR = "config error"  # `stormd config check` exits 2 with one line
MASKED = "printed masked"  # a secret printed or logged only as ********


@dataclass(frozen=True)
class Case:
    name: str
    input: Any
    outcome: str
    detail: Any = None  # what the outcome must say: a reason, a status, a key


@dataclass
class Tally:
    """Observed outcomes against the expected ones."""

    corpus: str
    wrong: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def check(self, case: Case, ok: bool, seen: Any) -> None:
        self.counts[case.outcome] += 1
        if not ok:
            self.wrong.append(f"{case.name}: expected {case.outcome} ({case.detail!r}), "
                              f"saw {seen!r}")

    def assert_all(self) -> None:
        summary = ", ".join(f"{outcome} {n}" for outcome, n in sorted(self.counts.items()))
        print(f"\n{self.corpus}: {sum(self.counts.values())} cases: {summary}")
        assert not self.wrong, "\n".join(self.wrong)

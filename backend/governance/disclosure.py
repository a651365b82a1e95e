"""Statistical disclosure control for the aggregates researchers receive.

The backend passes every aggregate through this module before it leaves; nothing here
touches the database or the network, so it is a pure library: row-level data in, a
protected table out.

API
---
``DisclosurePolicy(k=10, show_zero=True, round_to=None)``
    ``k``: the least number of distinct members a released cell may describe.
    ``show_zero``: whether empty cells are shown as 0 (see "Zeros" below).
    ``round_to``: round every shown count (not the statistics) to a multiple of this
    base (e.g. 5), an extra layer on top of suppression; ``None`` releases exact counts.

``aggregate(df, *, member_col, dims, value_col, stats=("mean",), policy,
guard=None, researcher=None, study=None) -> ProtectedTable``
    ``df`` has one row per observation (several per member). ``dims`` names one or two
    columns to group by; the table holds every combination of their values (all declared
    categories of a pandas Categorical, otherwise every value seen, sorted), plus the
    margins: row and column totals and the grand total, labelled ``TOTAL``. ``count`` is
    the number of distinct members in a cell. ``stats`` (ignored when ``value_col`` is
    None) are computed over the cell's observations: ``mean``, ``sd`` (n - 1), ``median``,
    ``min``, ``max`` and percentiles ``p1`` .. ``p99`` (linear interpolation). Rows whose
    value is missing are dropped first, so every statistic rests on exactly the members
    counted. With ``guard`` (and ``researcher`` and ``study``), the differencing check
    runs and the released footprints are recorded.
    ``partials=True``: each row of ``df`` is instead a partial aggregate of one member's
    observations within one cell (columns ``n``, ``sum``, ``sumsq``, ``min``, ``max``, as
    the analytics zone's rollups keep them; ``value_col`` is None). Only the statistics
    that merge exactly from those (``PARTIAL_STATS``: mean, sd, min, max) are allowed;
    the suppression is the same, since it looks at members, never at values.

``ProtectedTable(table, suppressed, policy, notes)``
    ``table``: a DataFrame indexed by the dims (a MultiIndex for two), columns ``count``
    (Int64) then one Float64 column per statistic; whatever is withheld is ``pd.NA``. An
    NA not listed in ``suppressed`` is undefined, not withheld (the mean of an empty
    cell, the sd of one observation).
    ``suppressed``: a list of ``Suppression(cell, reason, statistic)``; ``statistic`` is
    None when the whole cell (count and every statistic) is withheld. Reasons:
    ``primary_small_cell``, ``complementary``, ``differencing``, ``statistic_withheld``.
    ``to_json(audience="researcher" | "audit")`` gives a JSON-ready dict (see there).

``DifferencingGuard(store, *, k=10, key=None)``
    ``check(researcher, study, cells) -> set of cell keys`` that must not be released;
    ``record(researcher, study, released=..., withheld=...)`` after the answer is final.
    ``store`` is any ``FootprintStore`` (get/put of ``Footprint(members, released)`` per
    researcher and study); ``InMemoryFootprintStore`` is for tests and single processes.
    The caller must serialise check..record per researcher and study (``FootprintStore``
    says how), or two concurrent answers can each pass against the other's absence.

Pipeline (``aggregate``)
------------------------
1. Primary suppression: a cell (margins included) with fewer than ``k`` distinct members
   is withheld entirely. Counting members, not rows, matters: 9 members with 50
   observations each are still 9 people.
2. Differencing: cells that differ from something this researcher was given (or refused)
   in this study by fewer than ``k`` members are withheld (``DifferencingGuard``).
3. Complementary suppression until stable:
   a. the standard heuristic: no row or column line (its cells plus its total) may have
      exactly one withheld entry, since that entry is the total minus the others. The
      complement is a shown cell of the same line: one that also completes its crossing
      line if there is one (so two lines are fixed by one cell), else the smallest
      non-empty cell, else the line's total, else an empty cell; ties by table order.
   b. a line whose total is shown releases the sum of its withheld cells, so that sum
      must reach ``k`` too (two withheld cells of 1 member each would otherwise be known
      to be exactly 1 each, and a sum below k is itself a small cell).
   c. an audit of the whole table as linear equations (each line: cells - total = 0):
      a withheld entry whose value is fixed by the shown ones (its unit vector lies in
      the row space of the equations over the withheld entries) gets a further
      complement. The heuristic alone misses this: in two-way tables a "bridge" between
      two groups of withheld cells is recoverable although every line has two of them.
4. ``min``/``max`` of a margin are withheld when any cell under that margin is withheld:
   the margin's extreme might be the withheld cell's extreme, and comparing it with the
   shown cells' extremes says whether it is. The rule looks at the pattern, never the
   values, so withholding itself says nothing.
5. Counts are rounded (``round_to``) after every decision, which is made on true counts.

Known limits of the suppression (what this does not promise)
-------------------------------------------------------------
* Exact recovery from this table's linear relations is prevented; narrowing is not. With
  non-negativity and the public k, an attacker can bound a withheld cell: e.g. a withheld
  cell beside a withheld complement, when told which one is the complement (>= k),
  can be pinned exactly (1 + 10 = 11 gives 1). The researcher audience of ``to_json``
  therefore does not say which withheld cell is primary and which complementary. A full
  protection-interval audit (linear programming, as in tau-ARGUS) is not done.
* Complements are chosen greedily, not optimally: more may be withheld than needed.
* Only this table's equations are audited. Several answers together form linked tables;
  the guard covers the direct cases (a near-identical cell, a complement released later),
  not every linear combination of many answers (the "tracker" attack, e.g. A - B - C
  with B and C disjoint, each pair differing by k or more).
* Counts are distinct members, so when a member can fall in several cells of a line
  (week x cohort) margins are not the sum of their cells. The audit treats them as sums,
  which only overstates what an attacker can derive.
* Statistics are over observations: a member with many observations can dominate a
  cell's mean or percentiles (no (n, p) dominance rule is applied).

Zeros
-----
``show_zero=True`` by default: an empty cell contains nobody, so it discloses no one's
record, and withholding zeros (often structural, e.g. pregnancy x male) would set off
complements all over the table for no protection. What a zero can disclose is a group
attribute: in a line where every member falls in one cell, the zeros beside it tell that
all of them share that value. For such attributes use ``show_zero=False``: zeros are then
withheld as small cells (count < k) and protected like any other.

Reasons shown to researchers
----------------------------
``to_json()`` (researcher audience) reports every whole-cell suppression as
``suppressed`` and keeps ``statistic_withheld``; ``to_json(audience="audit")`` and
``ProtectedTable.suppressed`` keep the exact reason. Telling a researcher which hidden
cell is a complement tells them it holds at least k members, which narrows (and at the
edges fixes) the primary cell beside it; see the first limit above.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import threading
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

TOTAL = "Total"
"""The label of margins in every dimension; a category with this value is refused."""

Reason = Literal["primary_small_cell", "complementary", "differencing", "statistic_withheld"]
Key = tuple[Hashable, ...]
Audience = Literal["researcher", "audit"]

_PERCENTILE = re.compile(r"p([1-9][0-9]?)")
_NAMED_STATS = ("mean", "sd", "median", "min", "max")
_EXTREMES = ("min", "max")
# What a cell's statistics can be merged from partial aggregates (a median cannot).
PARTIAL_STATS = frozenset({"mean", "sd", "min", "max"})
# The columns of a partial aggregate (as the analytics zone's rollups keep them).
PARTS = ["n", "sum", "sumsq", "min", "max"]


@dataclass(frozen=True)
class DisclosurePolicy:
    k: int = 10
    show_zero: bool = True
    round_to: int | None = None

    def __post_init__(self) -> None:
        # bool is an int; k=True must not pass as k=1.
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"k must be an integer of at least 2 (1 protects nobody): {self.k!r}")
        if self.round_to is not None and (
            isinstance(self.round_to, bool)
            or not isinstance(self.round_to, int)
            or self.round_to < 1
        ):
            raise ValueError(f"round_to must be a positive integer or None: {self.round_to!r}")

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "show_zero": self.show_zero, "round_to": self.round_to}


@dataclass(frozen=True)
class Suppression:
    cell: Key
    reason: Reason
    statistic: str | None = None


# eq=False: comparing DataFrames with == is elementwise, not a truth value.
@dataclass(eq=False)
class ProtectedTable:
    table: pd.DataFrame
    suppressed: list[Suppression]
    policy: DisclosurePolicy
    notes: list[str] = field(default_factory=list)

    def to_json(self, *, audience: Audience = "researcher") -> dict[str, Any]:
        """A dict that ``json.dumps(..., allow_nan=False)`` accepts.

        ``{"dims", "columns", "total_label", "policy", "rows": [{"key", "margin",
        "values"}], "suppressed": [{"key", "statistic", "reason"}], "notes"}``; keys are
        lists in dims order, withheld values are null. The researcher audience merges
        the whole-cell reasons into ``suppressed`` (module docstring, "Reasons").
        """
        if audience not in ("researcher", "audit"):
            raise ValueError(f"audience must be 'researcher' or 'audit': {audience!r}")
        dims = [str(name) for name in self.table.index.names]
        columns = [str(c) for c in self.table.columns]
        rows = []
        for i in range(len(self.table)):
            key = _as_key(self.table.index[i])
            values = {c: _json_scalar(self.table.iat[i, j]) for j, c in enumerate(columns)}
            rows.append(
                {
                    "key": [_json_scalar(v) for v in key],
                    "margin": any(_is_total(v) for v in key),
                    "values": values,
                }
            )
        suppressed = [
            {
                "key": [_json_scalar(v) for v in s.cell],
                "statistic": s.statistic,
                "reason": (
                    "suppressed" if audience == "researcher" and s.statistic is None else s.reason
                ),
            }
            for s in self.suppressed
        ]
        return {
            "dims": dims,
            "columns": columns,
            "total_label": TOTAL,
            "policy": self.policy.to_json(),
            "rows": rows,
            "suppressed": suppressed,
            "notes": list(self.notes),
        }


# --- differencing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Footprint:
    """The members behind one cell of an answer, and whether the cell was shown."""

    members: frozenset[str]
    released: bool


class FootprintStore(Protocol):
    """Where the guard keeps footprints, per researcher and study.

    The backend's implementation lives in the database. ``check`` and ``record`` of one
    answer must not interleave with another answer's for the same researcher and study
    (two answers checked before either is recorded would both pass): hold a lock across
    the pair, e.g. ``pg_advisory_xact_lock`` on (researcher, study) in the transaction
    that ``put`` writes in.
    """

    def get(self, researcher: str, study: str) -> Iterable[Footprint]: ...

    def put(self, researcher: str, study: str, footprints: Sequence[Footprint]) -> None: ...


class InMemoryFootprintStore:
    """For tests and a single process. ``max_per_scope`` keeps only the most recent
    footprints per researcher and study; anything forgotten can be differenced against."""

    def __init__(self, max_per_scope: int | None = None) -> None:
        self._max = max_per_scope
        self._data: dict[tuple[str, str], deque[Footprint]] = {}
        self._lock = threading.Lock()

    def get(self, researcher: str, study: str) -> list[Footprint]:
        with self._lock:
            return list(self._data.get((researcher, study), ()))

    def put(self, researcher: str, study: str, footprints: Sequence[Footprint]) -> None:
        with self._lock:
            kept = self._data.setdefault((researcher, study), deque(maxlen=self._max))
            present = set(kept)
            for fp in footprints:
                if fp not in present:
                    kept.append(fp)
                    present.add(fp)


class DifferencingGuard:
    """Refuses cells that, set against an earlier answer, would isolate fewer than k people.

    Two rules, per researcher and study, comparing member sets A (new cell) and B (a
    footprint from an earlier answer):

    * B was released and 0 < |A xor B| < k: the two counts (or sums) differ by a group
      of fewer than k members, the classic "cohort, then cohort minus one" attack.
    * B was withheld (never released) and A is not empty and |A xor B| < k, equality
      included: releasing A would hand back (nearly) the withheld cell, e.g. a
      complement shown by a later query, from which the primary cell beside it follows.
      Empty cells are exempt: a zero says nothing about a withheld group that a zero
      would not say anyway (see "Zeros" in the module docstring).

    A cell whose members are exactly those of a cell released before passes: it was
    shown already.

    With ``key``, members are replaced by a keyed hash (HMAC-SHA256, 128 bits) before
    anything reaches the store, so the store never holds pseudonyms; set sizes and
    differences are unchanged (a collision is negligible at 128 bits).
    """

    def __init__(self, store: FootprintStore, *, k: int = 10, key: bytes | None = None) -> None:
        if isinstance(k, bool) or k < 2:
            raise ValueError(f"k must be an integer of at least 2: {k!r}")
        self.store = store
        self.k = k
        self._key = key

    def _hashed(self, members: frozenset[str]) -> frozenset[str]:
        key = self._key
        if key is None:
            return members
        return frozenset(
            hmac.new(key, m.encode(), hashlib.sha256).hexdigest()[:32] for m in members
        )

    def check(self, researcher: str, study: str, cells: Mapping[Key, frozenset[str]]) -> set[Key]:
        """The cells of a new answer that must be withheld."""
        _require_scope(researcher, study)
        history = list(self.store.get(researcher, study))
        released = {fp.members for fp in history if fp.released}
        # A set that was released once is public; being withheld elsewhere changes nothing.
        withheld = {fp.members for fp in history if not fp.released} - released
        refused: set[Key] = set()
        for cell, raw in cells.items():
            a = self._hashed(raw)
            if a in released:  # shown before: showing it again tells nothing new
                continue
            if any(0 < _xor_size(a, b, self.k) < self.k for b in released) or (
                a and any(_xor_size(a, b, self.k) < self.k for b in withheld)
            ):
                refused.add(cell)
        return refused

    def record(
        self,
        researcher: str,
        study: str,
        *,
        released: Mapping[Key, frozenset[str]],
        withheld: Mapping[Key, frozenset[str]],
    ) -> None:
        """Store the final answer's footprints. Empty sets are not stored: against an
        empty B, |A xor B| = |A|, which is below k only for cells withheld anyway."""
        _require_scope(researcher, study)
        footprints = [
            Footprint(self._hashed(m), flag)
            for cells, flag in ((released, True), (withheld, False))
            for m in cells.values()
            if m
        ]
        self.store.put(researcher, study, footprints)


def _require_scope(researcher: str, study: str) -> None:
    if not researcher or not study:
        raise ValueError("the differencing guard needs both a researcher and a study")


def _xor_size(a: frozenset[str], b: frozenset[str], k: int) -> int:
    # |A xor B| >= ||A| - |B||: most pairs are dismissed without touching the members.
    gap = abs(len(a) - len(b))
    if gap >= k:
        return gap
    return len(a) + len(b) - 2 * len(a & b)


# --- aggregate ----------------------------------------------------------------------------


def aggregate(
    df: pd.DataFrame,
    *,
    member_col: str,
    dims: Sequence[str],
    value_col: str | None,
    stats: Sequence[str] = ("mean",),
    policy: DisclosurePolicy,
    guard: DifferencingGuard | None = None,
    researcher: str | None = None,
    study: str | None = None,
    partials: bool = False,
) -> ProtectedTable:
    """Counts (and statistics of ``value_col``, or of the partial aggregates) by ``dims``,
    disclosure-controlled.

    See the module docstring for the pipeline. Raises ValueError for input it cannot
    protect faithfully: missing members or dimension values (map them to an explicit
    category first), a category equal to ``TOTAL``, unknown statistics.
    """
    dim_names = list(dims)
    stat_names = list(stats) if value_col is not None or partials else []
    _validate(df, member_col, dim_names, value_col, stat_names, partials)
    if guard is not None:
        if researcher is None or study is None:
            raise ValueError("a differencing guard needs researcher and study")
        if guard.k != policy.k:
            raise ValueError(f"the guard's k ({guard.k}) differs from the policy's ({policy.k})")

    if value_col is not None:
        df = df[df[value_col].notna()]
    categories = [_categories(df[d], d) for d in dim_names]
    keys, lines = _layout(categories)
    members, described = _cells(
        df, member_col, dim_names, value_col, stat_names, categories, partials
    )
    counts = {key: len(members[key]) for key in keys}

    hidden: dict[Key, Reason] = {}
    for key in keys:
        if counts[key] < policy.k and (counts[key] > 0 or not policy.show_zero):
            hidden[key] = "primary_small_cell"
    if guard is not None and researcher is not None and study is not None:
        candidates = {key: members[key] for key in keys if key not in hidden}
        for key in guard.check(researcher, study, candidates):
            hidden[key] = "differencing"
    _complement(keys, lines, counts, hidden, policy.k)

    withheld_stats = _withheld_extremes(categories, stat_names, hidden)
    if guard is not None and researcher is not None and study is not None:
        guard.record(
            researcher,
            study,
            released={key: members[key] for key in keys if key not in hidden},
            withheld={key: members[key] for key in keys if key in hidden},
        )

    table = _frame(keys, dim_names, stat_names, counts, described, hidden, withheld_stats, policy)
    position = {key: i for i, key in enumerate(keys)}
    suppressed = [Suppression(key, hidden[key]) for key in keys if key in hidden]
    suppressed += [
        Suppression(key, "statistic_withheld", stat)
        for key, stat in sorted(withheld_stats, key=lambda ks: (position[ks[0]], ks[1]))
    ]
    return ProtectedTable(table, suppressed, policy, _notes(stat_names, policy))


def _validate(
    df: pd.DataFrame,
    member_col: str,
    dims: list[str],
    value_col: str | None,
    stats: list[str],
    partials: bool = False,
) -> None:
    if partials:
        if value_col is not None:
            raise ValueError("partial aggregates carry their own values: value_col must be None")
        missing = [c for c in PARTS if c not in df.columns]
        if missing:
            raise ValueError(f"partial aggregates need the columns {missing!r}")
        merged = [s for s in stats if s not in PARTIAL_STATS]
        if merged:
            raise ValueError(
                f"{merged!r} cannot be merged from partial aggregates: use "
                f"{', '.join(sorted(PARTIAL_STATS))}"
            )
    if len(dims) not in (1, 2) or len(set(dims)) != len(dims):
        raise ValueError(f"dims must name one or two distinct columns: {dims!r}")
    named = [member_col, *dims, *([value_col] if value_col is not None else [])]
    if len(set(named)) != len(named):
        raise ValueError("member_col, dims and value_col must be distinct columns")
    missing = [c for c in named if c not in df.columns]
    if missing:
        raise ValueError(f"columns not in the data: {missing!r}")
    for col in (member_col, *dims):
        if bool(df[col].isna().any()):
            raise ValueError(
                f"column {col!r} has missing values; map them to an explicit category first "
                "(dropping them would make the margins disagree with what was counted)"
            )
    if value_col is not None and (
        not pd.api.types.is_numeric_dtype(df[value_col])
        or pd.api.types.is_bool_dtype(df[value_col])
    ):
        raise ValueError(f"value column {value_col!r} is not numeric")
    unknown = [s for s in stats if s not in _NAMED_STATS and not _PERCENTILE.fullmatch(s)]
    if unknown:
        raise ValueError(
            f"unknown statistics {unknown!r}: use {', '.join(_NAMED_STATS)} or p1 .. p99"
        )
    if len(set(stats)) != len(stats) or "count" in stats:
        raise ValueError(f"statistics must be distinct and not 'count': {stats!r}")


def _categories(column: pd.Series, name: str) -> list[Hashable]:
    if isinstance(column.dtype, pd.CategoricalDtype):
        values = list(column.cat.categories)
    else:
        try:
            values = list(pd.Index(column.unique()).sort_values())
        except TypeError as exc:
            raise ValueError(f"the values of {name!r} cannot be put in order: {exc}") from exc
    if any(_is_total(v) for v in values):
        raise ValueError(f"{name!r} has a category {TOTAL!r}, the label reserved for margins")
    return values


def _is_total(value: object) -> bool:
    return isinstance(value, str) and value == TOTAL


Line = tuple[list[Key], Key]


def _layout(categories: list[list[Hashable]]) -> tuple[list[Key], list[Line]]:
    """Every entry of the table in display order, and every line: (cells, their total)."""
    if len(categories) == 1:
        cells: list[Key] = [(c,) for c in categories[0]]
        return [*cells, (TOTAL,)], [(cells, (TOTAL,))]
    rows, cols = categories
    keys: list[Key] = [(r, c) for r in [*rows, TOTAL] for c in [*cols, TOTAL]]
    lines: list[Line] = [([(r, c) for c in cols], (r, TOTAL)) for r in [*rows, TOTAL]]
    lines += [([(r, c) for r in rows], (TOTAL, c)) for c in [*cols, TOTAL]]
    return keys, lines


def _margin_spans(categories: list[list[Hashable]]) -> dict[Key, list[Key]]:
    """Each margin (total) of the table and the interior cells it adds up."""
    if len(categories) == 1:
        return {(TOTAL,): [(c,) for c in categories[0]]}
    rows, cols = categories
    spans: dict[Key, list[Key]] = {(r, TOTAL): [(r, c) for c in cols] for r in rows}
    spans.update({(TOTAL, c): [(r, c) for r in rows] for c in cols})
    spans[(TOTAL, TOTAL)] = [(r, c) for r in rows for c in cols]
    return spans


def _cells(
    df: pd.DataFrame,
    member_col: str,
    dims: list[str],
    value_col: str | None,
    stats: list[str],
    categories: list[list[Hashable]],
    partials: bool = False,
) -> tuple[dict[Key, frozenset[str]], dict[Key, dict[str, float]]]:
    """Member sets and statistics of every entry, margins included."""
    empty = np.empty((0, len(PARTS)) if partials else 0, dtype=np.float64)
    members: dict[Key, frozenset[str]] = {}
    values: dict[Key, npt.NDArray[np.float64]] = {}
    # Pseudonyms as str once for the whole column: per row, str() is most of the time taken.
    df = df.assign(**{member_col: df[member_col].astype(str)})
    for group_key, group in df.groupby(dims, sort=False, observed=True):
        key = _as_key(group_key)
        members[key] = frozenset(group[member_col].to_numpy())
        if partials:
            values[key] = group[PARTS].to_numpy(dtype=np.float64)
        elif value_col is not None:
            values[key] = group[value_col].to_numpy(dtype=np.float64)

    def union(keys: Iterable[Key]) -> frozenset[str]:
        return frozenset().union(*(members.get(k, frozenset()) for k in keys))

    def concat(keys: Iterable[Key]) -> npt.NDArray[np.float64]:
        parts = [values[k] for k in keys if k in values]
        return np.concatenate(parts) if parts else empty

    interior = [key for key in _layout(categories)[0] if not any(_is_total(v) for v in key)]
    spans: dict[Key, list[Key]] = {key: [key] for key in interior}
    spans.update(_margin_spans(categories))
    out_members = {key: union(span) for key, span in spans.items()}
    describe = _merge if partials else _describe
    described = {key: describe(concat(span), stats) for key, span in spans.items()}
    return out_members, described


def _as_key(value: object) -> Key:
    return tuple(value) if isinstance(value, tuple) else (value,)


def _describe(values: npt.NDArray[np.float64], stats: list[str]) -> dict[str, float]:
    # Sorted first so that sums, hence means, do not depend on the order rows arrived in.
    v = np.sort(values)
    out: dict[str, float] = {}
    for name in stats:
        if v.size == 0 or (name == "sd" and v.size < 2):
            out[name] = math.nan
        elif name == "mean":
            out[name] = float(v.mean())
        elif name == "sd":
            out[name] = float(v.std(ddof=1))
        elif name == "min":
            out[name] = float(v[0])
        elif name == "max":
            out[name] = float(v[-1])
        else:
            out[name] = float(np.quantile(v, _quantile(name)))
    return out


def _merge(parts: npt.NDArray[np.float64], stats: list[str]) -> dict[str, float]:
    """The statistics of the observations behind partial aggregates (rows of PARTS)."""
    n = float(parts[:, 0].sum()) if parts.size else 0.0
    # fsum: exact sums, so the answer does not depend on the order the parts came in.
    total, squares = math.fsum(parts[:, 1]), math.fsum(parts[:, 2])
    out: dict[str, float] = {}
    for name in stats:
        if n == 0 or (name == "sd" and n < 2):
            out[name] = math.nan
        elif name == "mean":
            out[name] = total / n
        elif name == "sd":
            # Rounding can push a constant cell's variance a hair below zero.
            out[name] = math.sqrt(max(0.0, (squares - total * total / n) / (n - 1)))
        elif name == "min":
            out[name] = float(parts[:, 3].min())
        else:
            out[name] = float(parts[:, 4].max())
    return out


def _quantile(name: str) -> float:
    if name == "median":
        return 0.5
    match = _PERCENTILE.fullmatch(name)
    if match is None:  # _validate lets no other name through
        raise ValueError(name)
    return int(match.group(1)) / 100


# --- complementary suppression ----------------------------------------------------------


def _complement(
    keys: list[Key],
    lines: list[Line],
    counts: Mapping[Key, int],
    hidden: dict[Key, Reason],
    k: int,
) -> None:
    """Add complementary suppressions to ``hidden`` until no withheld entry is derivable."""
    position = {key: i for i, key in enumerate(keys)}
    lines_of: dict[Key, list[int]] = {key: [] for key in keys}
    for i, (cells, total) in enumerate(lines):
        for key in (*cells, total):
            lines_of[key].append(i)

    def hidden_in(i: int) -> list[Key]:
        cells, total = lines[i]
        return [key for key in (*cells, total) if key in hidden]

    def pick(line_ids: Iterable[int]) -> Key | None:
        best: tuple[tuple[int, int, int, int], Key] | None = None
        for i in line_ids:
            cells, total = lines[i]
            for key in (*cells, total):
                if key in hidden:
                    continue
                # A cell whose crossing line has exactly one withheld entry fixes that line too.
                crossing = any(len(hidden_in(j)) == 1 for j in lines_of[key] if j != i)
                # Prefer a non-empty cell, then the total; an empty cell hides nothing.
                tier = 1 if key == total else 0 if counts[key] > 0 else 2
                rank = (tier, 0 if crossing else 1, counts[key], position[key])
                if best is None or rank < best[0]:
                    best = (rank, key)
        return None if best is None else best[1]

    while True:
        changed = True
        while changed:
            changed = False
            for i, (_cells, total) in enumerate(lines):
                withheld = hidden_in(i)
                if not withheld:
                    continue
                lone = len(withheld) == 1
                small_sum = total not in hidden and sum(counts[key] for key in withheld) < k
                if lone or small_sum:
                    chosen = pick([i])
                    if chosen is not None:
                        hidden[chosen] = "complementary"
                        changed = True
        derivable = _derivable(keys, lines, hidden)
        if not derivable:
            return
        first = derivable[0]
        chosen = pick(lines_of[first]) or pick(range(len(lines)))
        if chosen is None:
            return
        hidden[chosen] = "complementary"


def _derivable(keys: list[Key], lines: list[Line], hidden: Mapping[Key, Reason]) -> list[Key]:
    """Withheld entries whose value follows from the shown ones through the line equations.

    With A the equations restricted to the withheld entries, the withheld values are one
    solution plus anything in null(A); an entry is fixed iff every null vector is zero there.
    """
    withheld = [key for key in keys if key in hidden]
    if not withheld:
        return []
    column = {key: j for j, key in enumerate(withheld)}
    a = np.zeros((len(lines), len(withheld)))
    for i, (cells, total) in enumerate(lines):
        for key in cells:
            if key in column:
                a[i, column[key]] = 1.0
        if total in column:
            a[i, column[total]] = -1.0
    _, singular, vt = np.linalg.svd(a, full_matrices=True)
    tolerance = max(a.shape) * np.finfo(np.float64).eps * (singular[0] if singular.size else 0.0)
    rank = int((singular > tolerance).sum())
    null = vt[rank:]
    if null.shape[0] == 0:
        return withheld
    free = np.abs(null).max(axis=0) > 1e-9
    return [key for j, key in enumerate(withheld) if not free[j]]


def _withheld_extremes(
    categories: list[list[Hashable]],
    stats: list[str],
    hidden: Mapping[Key, Reason],
) -> set[tuple[Key, str]]:
    """min/max of shown margins that span a withheld cell (the pattern, never the values)."""
    extremes = [s for s in stats if s in _EXTREMES]
    spans = _margin_spans(categories)
    return {
        (margin, stat)
        for margin, span in spans.items()
        if margin not in hidden and any(cell in hidden for cell in span)
        for stat in extremes
    }


# --- output -----------------------------------------------------------------------------


def _frame(
    keys: list[Key],
    dims: list[str],
    stats: list[str],
    counts: Mapping[Key, int],
    described: Mapping[Key, Mapping[str, float]],
    hidden: Mapping[Key, Reason],
    withheld_stats: set[tuple[Key, str]],
    policy: DisclosurePolicy,
) -> pd.DataFrame:
    if len(dims) == 1:
        index = pd.Index([key[0] for key in keys], name=dims[0], dtype=object)
    else:
        index = pd.MultiIndex.from_tuples(keys, names=dims)
    shown_counts: list[int | None] = [
        None if key in hidden else _round(counts[key], policy.round_to) for key in keys
    ]
    data: dict[str, Any] = {"count": pd.array(shown_counts, dtype="Int64")}
    for stat in stats:
        column: list[float | None] = []
        for key in keys:
            value = described[key][stat]
            # NaN (no observation, one value for sd) becomes NA too: one missing marker.
            withheld = key in hidden or (key, stat) in withheld_stats or math.isnan(value)
            column.append(None if withheld else value)
        data[stat] = pd.array(column, dtype="Float64")
    return pd.DataFrame(data, index=index)


def _round(n: int, base: int | None) -> int:
    if base is None:
        return n
    return (n + base // 2) // base * base  # half up, so the same count always rounds alike


def _notes(stats: list[str], policy: DisclosurePolicy) -> list[str]:
    notes = [
        f"count is distinct members; cells of fewer than {policy.k} members are withheld, "
        "with further cells so that totals cannot reveal them",
    ]
    if stats:
        notes.append("statistics are over observations; rows without a value are not counted")
    if any(s in _EXTREMES for s in stats):
        notes.append(
            "min and max are single observations of one member each: shown only for cells of "
            f"at least {policy.k} members, and withheld on totals over a withheld cell"
        )
    if policy.round_to is not None:
        notes.append(
            f"shown counts are rounded to a multiple of {policy.round_to}, each on its own, "
            "so totals need not add up"
        )
    if not policy.show_zero:
        notes.append("empty cells are withheld like small cells")
    return notes


def _json_scalar(value: object) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.date):  # datetime and pd.Timestamp included
        return value.isoformat()
    return str(value)

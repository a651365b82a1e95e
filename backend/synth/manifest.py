"""What a synthetic cohort holds: each file with the counts its parser and the refiner
must arrive at, so a test or benchmark can check a run without trusting it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.synth.episodes import Episode
from backend.synth.members import CohortSpec, Member


@dataclass
class Tally:
    """Counts kept while one file is written.

    `records` is what the parser's `report.read` says; every record becomes a sample, a
    `Rejected`, an unmapped count, or nothing (Apple's copy of a blood-pressure reading
    inside its correlation). `bad` counts every outcome that ends in the quarantine: the
    parser's `Rejected`s plus the samples the normaliser refuses. `duplicates` counts good
    samples whose dedup key an earlier good sample (in manifest order) already had.
    """

    records: int = 0
    samples: int = 0
    rejected: int = 0
    bad: int = 0
    duplicates: int = 0
    unmapped: int = 0

    def add(self, other: Tally) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the cohort directory, with "/"
    format: str  # the registry's name: device-batch, fhir, omh, apple-health, csv-lab
    member: str | None  # the member UUID to land it under; None: rows name their member
    records: int
    samples: int
    rejected: int
    bad: int
    duplicates: int
    unmapped: int
    batch_id: str | None = None  # a device batch's client id
    # Path of the batch this file sends again, byte for byte. Posted to the API it is
    # answered "replayed" and lands nothing; landed any other way (the CLI, no client
    # batch id), its good samples are the `duplicates` counted here.
    resend_of: str | None = None
    # Parse options the file needs, as `rejuve ingest` would pass them (a Fitbit
    # export's time zone: {"tz": "Asia/Tokyo"}).
    options: dict[str, str] | None = None

    @classmethod
    def of(cls, path: str, fmt: str, member: str | None, tally: Tally, **extra: Any) -> FileEntry:
        return cls(path, fmt, member, **dataclasses.asdict(tally), **extra)

    @property
    def quarantined(self) -> int:
        """Samples the normaliser refuses (the rest of `bad` are parser rejections)."""
        return self.bad - self.rejected

    @property
    def processed(self) -> int:
        """New observations: the refiner's ledger has parsed = processed + quarantined +
        duplicate, with parsed = samples + rejected and quarantined = bad."""
        return self.samples - self.quarantined - self.duplicates


@dataclass(frozen=True)
class Manifest:
    spec: CohortSpec
    members: tuple[Member, ...]
    files: tuple[FileEntry, ...] = field(default=())
    # Ground truth of the injected episodes (`CohortSpec.episode_share`).
    episodes: tuple[Episode, ...] = field(default=())

    def totals(self) -> dict[str, int]:
        keys = ("records", "samples", "rejected", "bad", "duplicates", "unmapped")
        out = {k: sum(getattr(f, k) for f in self.files) for k in keys}
        out["files"] = len(self.files)
        return out

    def as_dict(self) -> dict[str, Any]:
        spec = dataclasses.asdict(self.spec)
        spec["start"] = self.spec.start.isoformat()
        return {
            "spec": spec,
            "totals": self.totals(),
            "members": [
                {**dataclasses.asdict(m), "member_id": str(m.member_id)} for m in self.members
            ],
            "files": [dataclasses.asdict(f) for f in self.files],
            "episodes": [e.to_json() for e in self.episodes],
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.as_dict(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def load(cls, path: Path) -> Manifest:
        raw = json.loads(path.read_text(encoding="utf-8"))
        spec_raw = dict(raw["spec"])
        spec_raw["start"] = dt.datetime.fromisoformat(spec_raw["start"])
        members = tuple(
            Member(**{**m, "member_id": uuid.UUID(m["member_id"])}) for m in raw["members"]
        )
        files = tuple(FileEntry(**f) for f in raw["files"])
        found = tuple(Episode.from_json(e) for e in raw.get("episodes", ()))
        return cls(CohortSpec(**spec_raw), members, files, found)

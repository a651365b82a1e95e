"""A synthetic cohort on disk, in every input format, with a manifest of what to expect.

    python -m backend.synth.cohort --members 20 --days 7 --seed 42 --out DIR

writes, for each member `<uuid>`:

    DIR/<uuid>/device/batch-0001.json ...   API batches (device-batch); a resent batch is
                                            its own file with the same batch_id and bytes
    DIR/<uuid>/fhir/bundle.json             FHIR R4 transaction Bundle (fhir)
    DIR/<uuid>/omh/points.json              Open mHealth data points (omh)
    DIR/<uuid>/apple/export.xml             Apple Health export (apple-health), for the
                                            first `spec.apple_exports` members
    DIR/<uuid>/fitbit/fitbit-export.zip     Fitbit account export (fitbit), for the next
                                            `fitbit.FITBIT_EXPORTS` members without an
                                            injected episode
    DIR/<uuid>/garmin/garmin-export.zip     Garmin Connect export (garmin) with the
                                            workouts' FIT files nested in it, the same
    DIR/<uuid>/fit/<date>-<n>-<sport>.fit   FIT files alone (fit: all duplicates) and an
    DIR/<uuid>/health-connect/Health Connect.zip   Android Health Connect export
                                            (health-connect), for `spec.wearable_exports`
                                            members without an injected episode and
                                            without a Fitbit export

and for the cohort DIR/labs.csv (csv-lab, default mapping) and DIR/manifest.json: each
file with its format, member and the counts a parser and the refiner must arrive at, and
the episodes injected with `--episode-share` (member, kind, local dates, the rules that
should notice: backend/synth/episodes.py).
Files are listed in the order that makes `duplicates` true: per member device batches,
FHIR, Open mHealth, Apple, Fitbit; the lab CSV last. The same spec gives the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import uuid
from pathlib import Path

from backend.synth import csv_lab, fhir, fitbit, omh
from backend.synth.apple import apple_export, write_export
from backend.synth.device import device_batches, device_stream
from backend.synth.episodes import episodes
from backend.synth.fit_files import fit_files
from backend.synth.garmin import garmin_export
from backend.synth.health_connect import health_connect_export
from backend.synth.manifest import FileEntry, Manifest, Tally
from backend.synth.members import CohortSpec, Member, members

__all__ = [
    "CohortSpec",
    "FileEntry",
    "Manifest",
    "Member",
    "Tally",
    "apple_export",
    "device_batches",
    "main",
    "members",
    "write_cohort",
]


def write_cohort(spec: CohortSpec, out: Path) -> Manifest:
    """Write the cohort under `out` (created if need be; files of an earlier, larger
    cohort there are not removed) and return its manifest, also in out/manifest.json."""
    out.mkdir(parents=True, exist_ok=True)
    cohort = members(spec)
    files: list[FileEntry] = []
    shared: dict[uuid.UUID, list[fhir.Shared]] = {}
    # Fitbit wearers: members after the Apple exporters without an injected episode (the
    # export does not carry episodes, so it must not dilute the ground truth).
    quiet = [m for m in cohort[spec.apple_exports :] if not episodes(spec, m)]
    wearers = quiet[: fitbit.FITBIT_EXPORTS]
    # Garmin, FIT and Health Connect carry no episodes either; nor do they share a member
    # with Fitbit (two watches on one wrist).
    exporters = [m for m in cohort if m not in wearers and not episodes(spec, m)]
    exporters = exporters[: spec.wearable_exports]
    for member in cohort:
        who = str(member.member_id)
        first_sent: dict[str, str] = {}
        for number, (body, info) in enumerate(device_stream(spec, member), start=1):
            path = f"{who}/device/batch-{number:04d}.json"
            _write(out / path, body)
            resend_of = first_sent[info.batch_id] if info.resend else None
            first_sent.setdefault(info.batch_id, path)
            files.append(
                FileEntry.of(
                    path,
                    "device-batch",
                    who,
                    info.tally,
                    batch_id=info.batch_id,
                    resend_of=resend_of,
                )
            )
        data, tally, shared[member.member_id] = fhir.bundle(spec, member)
        path = f"{who}/fhir/bundle.json"
        _write(out / path, data)
        files.append(FileEntry.of(path, "fhir", who, tally))
        data, tally = omh.points(spec, member, shared[member.member_id])
        path = f"{who}/omh/points.json"
        _write(out / path, data)
        files.append(FileEntry.of(path, "omh", who, tally))
        if member.apple_export:
            path = f"{who}/apple/export.xml"
            tally = write_export(spec, member, out / path)
            files.append(FileEntry.of(path, "apple-health", who, tally))
        if member in wearers:
            files.append(fitbit.export_entry(spec, member, out, f"{who}/fitbit/fitbit-export.zip"))
        if member in exporters:
            files.extend(_wearable_exports(spec, member, out))
    data, tally = csv_lab.labs(spec, cohort, shared)
    _write(out / "labs.csv", data)
    files.append(FileEntry.of("labs.csv", "csv-lab", None, tally))
    injected = tuple(e for m in cohort for e in episodes(spec, m))
    manifest = Manifest(spec, tuple(cohort), tuple(files), injected)
    _write(out / "manifest.json", manifest.to_json())
    return manifest


def _wearable_exports(spec: CohortSpec, member: Member, out: Path) -> list[FileEntry]:
    who = str(member.member_id)
    fits = fit_files(spec, member)
    data, tally = garmin_export(spec, member, [f for f in fits if not f.again])
    written = [(f"{who}/garmin/garmin-export.zip", "garmin", data, tally)]
    for fit in fits:
        # The export already holds each workout: every good sample here is a duplicate.
        good = fit.tally.samples - (fit.tally.bad - fit.tally.rejected)
        counts = dataclasses.replace(fit.tally, duplicates=good)
        written.append((f"{who}/fit/{fit.name}", "fit", fit.data, counts))
    data, tally = health_connect_export(spec, member)
    written.append((f"{who}/health-connect/Health Connect.zip", "health-connect", data, tally))
    for path, _, body, _ in written:
        _write(out / path, body)
    return [FileEntry.of(path, fmt, who, counts) for path, fmt, _, counts in written]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _start(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return moment


def main(argv: list[str] | None = None) -> int:
    defaults = CohortSpec()
    parser = argparse.ArgumentParser(
        prog="python -m backend.synth.cohort",
        description="Write a deterministic synthetic cohort in every input format.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--members", type=int, default=defaults.members)
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--start",
        type=_start,
        default=defaults.start,
        help=f"ISO 8601 with offset (default {defaults.start.isoformat()})",
    )
    parser.add_argument("--bad-rate", type=float, default=defaults.bad_rate)
    parser.add_argument("--duplicate-rate", type=float, default=defaults.duplicate_rate)
    parser.add_argument("--gap-rate", type=float, default=defaults.gap_rate)
    parser.add_argument("--five-minute-hr-share", type=float, default=defaults.five_minute_hr_share)
    parser.add_argument("--apple-exports", type=int, default=defaults.apple_exports)
    parser.add_argument(
        "--wearable-exports",
        type=int,
        default=defaults.wearable_exports,
        help="members (the first ones) who also upload Garmin, FIT and Health Connect files",
    )
    parser.add_argument(
        "--episode-share",
        type=float,
        default=defaults.episode_share,
        help="share of members with one injected episode (ground truth in the manifest)",
    )
    args = parser.parse_args(argv)
    try:
        spec = CohortSpec(
            members=args.members,
            days=args.days,
            seed=args.seed,
            start=args.start,
            bad_rate=args.bad_rate,
            duplicate_rate=args.duplicate_rate,
            gap_rate=args.gap_rate,
            five_minute_hr_share=args.five_minute_hr_share,
            apple_exports=args.apple_exports,
            wearable_exports=args.wearable_exports,
            episode_share=args.episode_share,
        )
    except ValueError as e:
        parser.error(str(e))
    manifest = write_cohort(spec, args.out)
    t = manifest.totals()
    sys.stdout.write(
        f"wrote {t['files']} files for {spec.members} members x {spec.days} days to "
        f"{args.out}: {t['samples']} samples, {t['bad']} bad, {t['duplicates']} duplicates "
        f"(manifest: {args.out / 'manifest.json'})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

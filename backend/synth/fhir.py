"""A member's clinic record as one FHIR R4 transaction Bundle: the Patient, vitals at each
visit (blood-pressure panel with components, weight in kg or [lb_av], point-of-care glucose
in mg/dL) and a lab panel at the first visit (HbA1c, cholesterol, HDL, glucose in mmol/L
under its own LOINC code, and a SARS-CoV-2 PCR whose result is a SNOMED concept). The
Patient carries a medical record number, as a clinic's bundle does: ingesting the bundle
for the member links it (`backend.identity.identifiers`)."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass, replace
from typing import Any

from backend.synth.faults import FUTURE, Faults, implausible, wrong_unit
from backend.synth.manifest import Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import iso, local_dates, spot

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_SNOMED = "http://snomed.info/sct"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_MRN_SYSTEM = "https://clinic.synthetic.rejuve.example/mrn"
_PCR = ("94500-6", "SARS-CoV-2 RNA [Presence] in Respiratory system specimen by NAA")
_PCR_RESULTS = (("260415000", "Not detected"), ("260373001", "Detected"))
_LB_PER_KG = 1 / 0.45359237
_GLUCOSE_MG_PER_MMOL = 18.0156


@dataclass(frozen=True)
class Shared:
    """A good result another source of the member may deliver again (an overlap)."""

    code: str  # LOINC as written
    value: float
    unit: str  # UCUM as written
    when: dt.datetime


@dataclass(frozen=True)
class _Part:
    code: str
    display: str
    value: float | None
    unit: str
    comparator: str | None = None
    spoilt: bool = False  # parseable, but the normaliser must refuse it
    concept: tuple[str, str] | None = None  # a coded result (SNOMED code, display)

    @property
    def rejected(self) -> bool:
        return (self.value is None and self.concept is None) or self.comparator is not None


@dataclass
class _Obs:
    when: dt.datetime
    category: str  # vital-signs | laboratory
    code: str  # the panel's code when there are components
    display: str
    parts: list[_Part]
    panel: bool = False
    future: bool = False
    source: str = "#clinic"


def bundle(spec: CohortSpec, member: Member) -> tuple[bytes, Tally, list[Shared]]:
    rng = stream_rng(spec.seed, "fhir", member.member_id)
    faults = Faults(stream_rng(spec.seed, "fhir-faults", member.member_id), spec)
    observations: list[_Obs] = []
    visits = 0
    for date in local_dates(spec, member):
        when = spot(spec, member, date, 8 * 60 + 5 * rng.randrange(48))
        if when is not None:
            if visits % 3 == 0:  # a visit every third day
                observations.extend(_visit(rng, member, when, first=not observations))
            visits += 1

    tally = Tally(records=1, unmapped=1)  # the Patient: read, not a measurement
    shared: list[Shared] = []
    entries: list[dict[str, Any]] = [_patient(member)]
    for obs in observations:
        coded = obs.parts[0].concept is not None
        if not coded and faults.bad():
            obs = _spoil(obs, faults)
        resource = _resource(obs, member, len(entries))
        entries.append(_entry(resource))
        tally.records += 1
        good = True
        for part in obs.parts:
            if part.rejected:
                tally.rejected += 1
                tally.bad += 1
                good = False
            else:
                tally.samples += 1
                if part.spoilt or obs.future:
                    tally.bad += 1
                    good = False
        if good and not obs.panel and not coded:
            part = obs.parts[0]
            shared.append(Shared(part.code, float(part.value or 0), part.unit, obs.when))
        if good and faults.duplicate():
            # Sent again by an interface engine that retried: a new resource id, the
            # same measurement.
            entries.append(_entry(_resource(obs, member, len(entries))))
            tally.records += 1
            tally.samples += len(obs.parts)
            tally.duplicates += len(obs.parts)
    document = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return (json.dumps(document, indent=1) + "\n").encode(), tally, shared


def _visit(rng: random.Random, member: Member, when: dt.datetime, *, first: bool) -> list[_Obs]:
    systolic = round(member.systolic + rng.gauss(0, 6))
    diastolic = round(member.diastolic + rng.gauss(0, 4))
    kg = round(member.weight_kg + rng.gauss(0, 0.5), 1)
    weight = (
        _Part("29463-7", "Body weight", round(kg * _LB_PER_KG, 1), "[lb_av]")
        if member.weight_unit == "lb"
        else _Part("29463-7", "Body weight", kg, "kg")
    )
    glucose = round(member.glucose_mg_dl + rng.gauss(0, 8))
    out = [
        _Obs(
            when,
            "vital-signs",
            "85354-9",
            "Blood pressure panel with all children optional",
            [
                _Part("8480-6", "Systolic blood pressure", systolic, "mm[Hg]"),
                _Part("8462-4", "Diastolic blood pressure", diastolic, "mm[Hg]"),
            ],
            panel=True,
        ),
        _Obs(when, "vital-signs", "29463-7", "Body weight", [weight]),
        _Obs(
            when + dt.timedelta(minutes=5),
            "laboratory",
            "2339-0",
            "Glucose [Mass/volume] in Blood",
            [_Part("2339-0", "Glucose [Mass/volume] in Blood", glucose, "mg/dL")],
            source="#poc-meter",
        ),
    ]
    if first:
        drawn = when + dt.timedelta(minutes=20)
        mmol = round((member.glucose_mg_dl + rng.gauss(0, 6)) / _GLUCOSE_MG_PER_MMOL, 1)
        labs = (
            ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", member.hba1c, "%"),
            ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", member.cholesterol, "mg/dL"),
            ("2085-9", "HDL Cholesterol [Mass/volume] in Serum or Plasma", member.hdl, "mg/dL"),
            ("15074-8", "Glucose [Moles/volume] in Blood", mmol, "mmol/L"),
        )
        out.extend(
            _Obs(drawn, "laboratory", code, name, [_Part(code, name, value, unit)], source="#lab")
            for code, name, value, unit in labs
        )
        result = _PCR_RESULTS[rng.random() < 0.1]
        pcr = _Part(_PCR[0], _PCR[1], None, "", concept=result)
        out.append(_Obs(drawn, "laboratory", _PCR[0], _PCR[1], [pcr], source="#lab"))
    return out


def _spoil(obs: _Obs, faults: Faults) -> _Obs:
    kinds = ["missing", "implausible", "unit", "future"]
    if obs.category == "laboratory":
        kinds.append("censored")
    kind = faults.pick(kinds)
    if kind == "future":
        return replace(obs, when=obs.when + FUTURE, future=True)
    first, *rest = obs.parts
    if kind == "missing":
        first = replace(first, value=None)
    elif kind == "censored":
        first = replace(first, comparator="<")
    elif kind == "implausible":
        first = replace(first, value=implausible(first.code), spoilt=True)
    else:
        first = replace(first, unit=wrong_unit(first.code), spoilt=True)
    return replace(obs, parts=[first, *rest])


def _patient(member: Member) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{member.member_id}",
        "resource": {
            "resourceType": "Patient",
            "id": str(member.member_id),
            "identifier": [
                {
                    "type": {"coding": [{"system": _V2_0203, "code": "MR"}], "text": "MRN"},
                    "system": _MRN_SYSTEM,
                    "value": f"MRN-{member.member_id.int % 10**8:08d}",
                }
            ],
            "gender": member.sex,
            "birthDate": str(member.birth_year),
        },
        "request": {"method": "POST", "url": "Patient"},
    }


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "POST", "url": "Observation"},
    }


def _concept(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _quantity(part: _Part) -> dict[str, Any]:
    quantity: dict[str, Any] = {}
    if part.value is not None:
        quantity["value"] = part.value
    if part.comparator is not None:
        quantity["comparator"] = part.comparator
    quantity.update(unit=part.unit, system=UCUM, code=part.unit)
    return quantity


def _resource(obs: _Obs, member: Member, number: int) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(uuid.uuid5(member.member_id, f"observation-{number}")),
        "meta": {"source": obs.source},
        "status": "final",
        "category": [
            {"coding": [{"system": _CATEGORY, "code": obs.category, "display": obs.category}]}
        ],
        "code": _concept(obs.code, obs.display),
        "subject": {"reference": f"urn:uuid:{member.member_id}"},
        "effectiveDateTime": iso(obs.when),
    }
    if obs.panel:
        resource["component"] = [
            {"code": _concept(p.code, p.display), "valueQuantity": _quantity(p)} for p in obs.parts
        ]
    elif (concept := obs.parts[0].concept) is not None:
        code, display = concept
        resource["valueCodeableConcept"] = {
            "coding": [{"system": _SNOMED, "code": code, "display": display}],
            "text": display,
        }
    else:
        resource["valueQuantity"] = _quantity(obs.parts[0])
    return resource

"""Per-study pseudonyms: stable within a study, different across studies, keys wrapped."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from backend.keys.kms import KeyUnavailable, LocalKms
from backend.keys.study_keys import StudyKeys, pseudonym


def test_pseudonyms_are_stable_per_study_and_unlinkable_across(tmp_path: Path) -> None:
    kms = LocalKms.from_file(tmp_path / "kms" / "master.key")
    keys = StudyKeys(tmp_path / "studies", kms)
    m = uuid.uuid4()
    a1 = pseudonym(keys.key("sleep-1"), m)
    again = StudyKeys(tmp_path / "studies", kms)  # another process, same store
    assert pseudonym(again.key("sleep-1"), m) == a1
    assert pseudonym(keys.key("heart-2"), m) != a1
    assert a1.startswith("p-") and len(a1) == 22 and str(m) not in a1
    members = [uuid.uuid4() for _ in range(5000)]
    assert len({pseudonym(keys.key("sleep-1"), x) for x in members}) == 5000
    stored = json.loads((tmp_path / "studies" / "sleep-1.json").read_text())
    assert keys.key("sleep-1").hex() not in json.dumps(stored)  # wrapped, not plain
    other_master = LocalKms.from_file(tmp_path / "other" / "master.key")
    with pytest.raises(KeyUnavailable):
        StudyKeys(tmp_path / "studies", other_master).key("sleep-1")
    with pytest.raises(ValueError, match="not a study id"):
        keys.key("../etc")

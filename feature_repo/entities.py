"""Who features are about. `member` keys every feature view (the internal member id, as
text); `study_subject` is a study's pseudonym, declared for the research feature service:
pseudonyms are per study and never stored in a feature table (the backend maps them to
members inside its SQL)."""

from feast import Entity, ValueType

member = Entity(
    name="member",
    join_keys=["member_id"],
    value_type=ValueType.STRING,
    description="a member (internal pseudonymous id); never leaves the backend",
)

study_subject = Entity(
    name="study_subject",
    join_keys=["pseudonym"],
    value_type=ValueType.STRING,
    description="a member as one study knows them (per-study pseudonym)",
)

"""The virtual lab's speed-only paths give exactly what the plain paths give."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ota_server.engine.job_model import Job, MessageKind, Phase, job_replace


def test_job_replace_is_dataclasses_replace() -> None:
    job = Job(n=4, confirmed=3, start_counter=3, statuses=("a",), query_cntrs=(7,))
    changes = {"phase": Phase.WAITING, "next_kind": MessageKind.QUERY, "deadline": 12.5, "attempts": 2}
    fast, plain = job_replace(job, **changes), replace(job, **changes)
    assert fast == plain and type(fast) is Job and repr(fast) == repr(plain) and hash(fast) == hash(plain)
    assert job_replace(job) == job and job_replace(job) is not job
    with pytest.raises(TypeError):
        job_replace(job, nonsense=1)


def test_job_replace_every_field_and_still_frozen() -> None:
    from dataclasses import FrozenInstanceError, fields

    job = Job(n=2)
    for number, field in enumerate(fields(Job)):
        value = (f"v{number}",) if isinstance(getattr(job, field.name), tuple) else number + 100
        fast, plain = job_replace(job, **{field.name: value}), replace(job, **{field.name: value})
        assert fast == plain and getattr(fast, field.name) == value
        assert all(getattr(fast, f.name) == getattr(job, f.name) for f in fields(Job) if f.name != field.name)
    with pytest.raises(FrozenInstanceError):
        job_replace(job, applied=1).applied = 2  # type: ignore[misc]

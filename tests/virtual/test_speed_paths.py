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

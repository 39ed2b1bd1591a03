"""The campaign engine: PURE by default (tests/test_architecture.py) — every module here takes
``now`` and a seeded ``random.Random`` as arguments and does no I/O.

* :mod:`.campaign` the engine: events in, effects out, ``next_deadline()`` (house-style §2.1);
* :mod:`.job_model`, :mod:`.job_machine`, :mod:`.card_messages` one job's life (claim 1c, 7-9);
* :mod:`.por_verification`, :mod:`.card_reports`, :mod:`.por_matcher`, :mod:`.deliveries` what
  comes back from the cards and for which job;
* :mod:`.pacing` window, rate and throttling per bind; :mod:`.lease` one runner per campaign;
* :mod:`.records`, :mod:`.job_slots` what a store keeps, and the jobs built from it.
"""

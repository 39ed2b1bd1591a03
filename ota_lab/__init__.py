"""The lab: the one place besides the tests that wires ota_server, handset and sim_emulator together.

``ota-lab run LAB --seed N`` / ``ota-lab sweep LAB --seeds 1-500``: docs/labs.md.
"""

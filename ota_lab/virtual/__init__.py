"""The virtual-time lab: the OTA server's jobs, the SMSC, the radio, the phones and the SIMs in one
process on a virtual clock (docs/labs.md "Virtual time"). Entry point: :func:`run_virtual`."""

from ota_lab.virtual.driver import VirtualRun, build_run, run_virtual

__all__ = ["VirtualRun", "build_run", "run_virtual"]

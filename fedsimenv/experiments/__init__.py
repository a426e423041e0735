"""The experiments layer: episodes with run directories, replay, jobs, compare, sweep, calibrate, RL.

It sits above ``agents`` and the env layer and below :mod:`fedsimenv.cli` (``docs/DESIGN.md``
shows the layers). Importing this package imports nothing else: its modules load torch, agents and
the env only when they are used.
"""

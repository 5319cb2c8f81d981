"""Executors run admitted jobs and report what happens to them.

``base.Executor`` is the interface; ``local`` runs SUMO as subprocesses on
this machine, ``kubernetes`` (issue 3) as Kubernetes Jobs.  Both publish
:class:`core.domain.states.StatusEvent` onto the status queue and never touch
the database: the status actor applies events through the state machine.
"""

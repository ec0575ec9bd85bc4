"""Grading notebooks fast with nbgrader's own verdicts: warm kernels forked from a preloaded
zygote, in a sandbox, for ``syslab check`` (the course's mutants) and ``syslab grade`` (a class).

- :mod:`~lab_core.autograde.warm`: the zygote for one notebook and the kernelspec nbgrader uses.
- :mod:`~lab_core.autograde.zygote`, :mod:`~lab_core.autograde.launcher`: the fork server and the kernel command.
- :mod:`~lab_core.autograde.sandbox`: where a graded kernel may write, whom it may signal, how much it may print.
- :mod:`~lab_core.autograde.nbgrader_runs`: ``nbgrader autograde`` over parallel course copies, per-cell points.
- :mod:`~lab_core.autograde.classroom`: ``syslab grade LAB DIR``.
"""

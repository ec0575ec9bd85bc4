"""sysdesign-lab systems: one package per lab, plus the shared ``sim`` and ``store`` kits.

Nothing here imports a UI library; dashboards live in ``widgets``.
"""

"""Dashboards for the labs (Panel + HoloViews); each ``widgets/<lab>.py`` offers ``dashboard()`` and ``app()``."""

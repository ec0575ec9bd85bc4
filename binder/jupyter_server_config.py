"""Jupyter settings for Binder: JupyterLab opens on the student notebooks; dashboards at /panel/."""

c = get_config()  # noqa: F821 - Jupyter defines get_config() when it runs this file

# `jupyter lab` replaces the server's default URL with JupyterLab's own, so both are set.
c.ServerApp.default_url = "/lab/tree/labs"
c.LabApp.default_url = "/lab/tree/labs"
# jupyter-server-proxy starts `syslab serve` on first visit to <base_url>panel/ and forwards to it;
# absolute_url keeps the prefix in the path, which Panel is told about with --prefix.
c.ServerProxy.servers = {
    "panel": {
        "command": [
            "syslab",
            "serve",
            "--port",
            "{port}",
            "--address",
            "127.0.0.1",
            "--prefix",
            "{base_url}panel",
            "--allow-websocket-origin",
            "*",
        ],
        "absolute_url": True,
        "timeout": 120,
        "launcher_entry": {"title": "sysdesign-lab dashboards"},
    }
}

"""``bdt serve``: the report site under uvicorn, in this process."""

from __future__ import annotations

from collections.abc import Callable


def serve(settings, host: str = "127.0.0.1", port: int = 8080,
          echo: Callable[[str], None] = print) -> int:
    """Serve until stopped (Ctrl-C). Publishes a warehouse snapshot first when a build made
    before the metric layer left none."""
    import uvicorn

    from bdt_platform.site.app import create_app

    app = create_app(settings)
    try:
        app.state.site.data.layer.ensure_snapshot(settings)
    except Exception as exc:  # noqa: BLE001 - the site still starts; pages say what is missing
        echo(f"bdt serve: no warehouse snapshot yet ({exc}); pages answer 503 until "
             "`bdt build` publishes one")
    shown = f"[{host}]" if ":" in host else host
    echo(f"report site on http://{shown}:{port}/ (BDT_HOME={settings.home}); Ctrl-C stops it")
    if settings.site_identity_header:
        echo(f"signed-in user taken from the {settings.site_identity_header} header "
             "(BDT_SITE_IDENTITY_HEADER): serve it only behind that proxy")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0

"""``ota-server serve``: the OTA platform as a service (HTTP JSON API, Prometheus /metrics, dashboard).

Modules: platform.py (the hosted campaigns: CampaignRunner tasks on one card store), app.py (the
Starlette routes and their input rules), metrics.py (/metrics), serve.py (uvicorn in the same event
loop), static/ (the dashboard: HTML, CSS and one script, no build step). Routes: docs/http-api.md.
"""

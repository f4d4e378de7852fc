"""The HTTP side: everything gunicorn's processes run (the routes, the edge, the page, the dashboard)."""

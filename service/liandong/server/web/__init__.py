"""The web pages and the HTTP/JSON door (`--http`), served beside gRPC by the same process.

Both call the very ResponseService handlers the gRPC port calls (calls.py), on the same RulesState,
so an answer on a page, over /v1 JSON and over gRPC is one answer. serve.py runs uvicorn in the
service's lifecycle; door.py is /v1/...; pages.py and forms.py are the pages for people.

Extension points left for later pages: `pages.NAV` (the menu), `pages.routes()` (add Route objects),
and `serve.build_app(extra_routes=...)`: the incident pages (open incidents, one incident's timeline
as server-sent events from WatchIncidents) and "Compare versions" (`liandong rules diff`) plug in there,
as do their /v1 JSON routes in `door.ROUTES`.
"""

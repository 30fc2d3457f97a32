"""The web pages and the HTTP/JSON door (`--http`), served beside gRPC by the same process.

Both call the very ResponseService handlers the gRPC port calls (calls.py), on the same RulesState,
so an answer on a page, over /v1 JSON and over gRPC is one answer. serve.py runs uvicorn in the
service's lifecycle; door.py is /v1/...; pages.py and forms.py are the pages for people.

IncidentService is reached the same way (incident_door.py: /v1/incidents, WatchIncidents as
server-sent events; incident_pages.py: open incidents and one incident's live timeline), through the
IncidentServicer the gRPC port serves, with HTTP callers identified by bearer token.

Extension points left for later pages: `pages.NAV` (the menu), `pages.routes()` (add Route objects),
and `serve.build_app(extra_routes=...)`: "Compare versions" (`liandong rules diff`) plugs in there.
"""

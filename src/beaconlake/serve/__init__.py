"""The composition layer for HTTP: the one app every server worker runs (``app``), the HTTP
server (``http``), the read and admin keys (``auth``), the read API (``api``), the profiles API
(``profiles``) and the dashboard (``dashboard``)."""

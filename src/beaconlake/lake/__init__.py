"""The lake's formats, one home each: the spool segment's bytes (``segment``), what a spooled
record holds and how its events become lake events (``records``), and the lake's keys
(``layout``). A core package: it imports only the core, and every stage that writes or reads
the lake imports it instead of spelling a format again."""

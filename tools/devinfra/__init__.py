"""Local development infrastructure: a tansu Kafka broker and a private ``redis-server``,
started on free ports without Docker, for the ``demandstream dev`` command and the tests.

Nothing here is used by a production worker."""

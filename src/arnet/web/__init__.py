"""`arnet serve`: a web dashboard of the event store (cameras, live scores, alerts) and of
training runs, with a JSON API behind every page. FastAPI and uvicorn are the `web` extra."""

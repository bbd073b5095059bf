"""The two FastAPI apps: the model service and the gateway in front of it."""

"""Everything HTTP: the model service and the gateway, their request bodies, validation and
error answers."""

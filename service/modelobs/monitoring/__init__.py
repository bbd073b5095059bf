"""What watches the model: drift, quality once labels arrive, the prediction log and the
model's own instruments. Nothing here knows about HTTP; the apps feed it."""

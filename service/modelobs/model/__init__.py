"""The model: a deterministic training set, its feature schema, training and storage."""

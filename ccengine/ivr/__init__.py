"""IVR trees: model and validation, a pure interpreter, connectors, graphs and statistics."""

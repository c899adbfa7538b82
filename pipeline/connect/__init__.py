"""What talks to the world outside a run: devices for hardware in the loop (`hil`), model registries
(`registry`), and experiment tracking in MLflow (`tracking`)."""

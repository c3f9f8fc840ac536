"""ESPnet task subclasses. Importing one registers our components (see registry.py)."""

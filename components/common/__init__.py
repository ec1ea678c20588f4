"""Shared rooms: config machinery, data sources, models, sampling, checkpoints, tracking. Never imports a stage."""

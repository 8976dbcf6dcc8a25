"""robustlens engine: data, models, training, attacks, features, smoothing, jobs. Never imports Qt."""

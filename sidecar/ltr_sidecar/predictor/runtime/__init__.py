"""What a serving process needs of a predictor: the interface, models, artifacts, the version store, loading."""

"""What a serving process needs of a predictor: interface, models, artifacts, version store, loading."""

"""Operating predictors: evaluation, retraining from traces, and the `ltr predictor` command."""

"""Training predictors: objectives (ListMLE, buckets), the training loop and pipeline, consensus targets."""

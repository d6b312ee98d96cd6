"""Training predictors: objectives (ListMLE, buckets), the training loop, the train pipeline, consensus targets."""

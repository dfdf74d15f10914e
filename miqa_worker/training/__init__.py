"""Training pipeline of the MIQA network: synthetic data, artifacts, folds, training, report."""

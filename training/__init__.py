"""Offline side of demandstream: dataset loaders, baselines, training, evaluation and reports."""

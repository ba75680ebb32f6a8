"""Newcomer tools: the one-command live demo, dataset replay and a prediction tail.

- ``demandstream demo`` (:mod:`tools.demo.cli`): local broker + Redis, a demo model (trained on
  first use), an in-process worker, simulated shoppers and a live terminal view.
- ``demandstream replay`` (:mod:`tools.demo.replay`): a dataset into the events topic in
  event-time order.
- ``demandstream tail`` (:mod:`tools.demo.tail`): the predictions topic, pretty or as JSON.

``training`` is imported only inside the functions that need it (training the demo model,
reading a dataset for replay): ``stream`` never imports it, or torch, at module import time.
"""

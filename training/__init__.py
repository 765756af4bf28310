"""Fine-tuning for instruction backtranslation: the backward model M_yx and the forward models M0, M1, M2.

``python -m training --config conf/train/<name>.yaml`` runs one recipe (``training/__main__.py``), on several
processes under torchrun (``training.distributed``) or on a Spark cluster (``training.databricks``);
``training.bootstrap`` builds the tiny local base model that tests and CPU runs start from.
"""

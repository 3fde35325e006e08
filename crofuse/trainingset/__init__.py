"""Training sets built from STAC through the mapping pipeline (docs/training-sets.md).

    from crofuse.trainingset import build_training_set, training_set_config
    config = training_set_config(out="data/ts", cities=[{"name": "wuhan"}], years=[2021, 2022], catalog=URL,
                                 labels="sample", split="blocked")
    summary = build_training_set(config)     # data/ts/{train,val,test}/{optical,sar,label}/*.tif + patches.json

``out`` may be an ``s3://bucket/prefix`` URL; :func:`local_training_set` gives the trainer a local copy.
"""

from crofuse.trainingset.build import (
    INCOMPLETE,
    MANIFEST,
    PreparedCityYear,
    TrainingSetPlan,
    TrainingSetSummary,
    build_training_set,
    finish_training_set,
    local_training_set,
    plan_training_set,
    prepare_city_year,
    read_manifest,
    start_training_set,
    write_city_year,
)
from crofuse.trainingset.config import DEFAULT_BLOCK_KM, TrainingSetConfig, training_set_config
from crofuse.trainingset.splits import SPLITS, Grid, Window, leaked_pixels

__all__ = [
    "DEFAULT_BLOCK_KM",
    "INCOMPLETE",
    "MANIFEST",
    "SPLITS",
    "Grid",
    "PreparedCityYear",
    "TrainingSetConfig",
    "TrainingSetPlan",
    "TrainingSetSummary",
    "Window",
    "build_training_set",
    "finish_training_set",
    "leaked_pixels",
    "local_training_set",
    "plan_training_set",
    "prepare_city_year",
    "read_manifest",
    "start_training_set",
    "training_set_config",
    "write_city_year",
]

"""Training data: streaming loaders (JSON lines, Taobao, DIGINETICA, Kafka replay), cleaning
into per-user sequences, and the flat index-space arrays used for evaluation."""

from training.data.bad_rows import BadRows
from training.data.cleaning import DataSummary, UserSequence, clean_events
from training.data.diginetica import load_diginetica
from training.data.encoded import EncodedEvents, Target, encode_sequences, training_tokens
from training.data.exceptions import (
    DataError,
    DataFormatError,
    KafkaReplayError,
    TooManyBadRowsError,
)
from training.data.jsonl import load_jsonl
from training.data.kafka import iter_kafka, load_kafka
from training.data.load import DATA_FORMATS, DataFormat, default_ts_bounds, load_events
from training.data.taobao import TAOBAO_TS_BOUNDS_MS, load_taobao

__all__ = [
    "DATA_FORMATS",
    "TAOBAO_TS_BOUNDS_MS",
    "BadRows",
    "DataError",
    "DataFormat",
    "DataFormatError",
    "DataSummary",
    "EncodedEvents",
    "KafkaReplayError",
    "Target",
    "TooManyBadRowsError",
    "UserSequence",
    "clean_events",
    "default_ts_bounds",
    "encode_sequences",
    "iter_kafka",
    "load_diginetica",
    "load_events",
    "load_jsonl",
    "load_kafka",
    "load_taobao",
    "training_tokens",
]

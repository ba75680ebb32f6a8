"""One typed settings object, read from the environment (prefix ``DEMANDSTREAM_``).

Every field is documented in ``docs/configuration.md``; a test keeps the two in sync.

>>> s = Settings(_env_file=None)
>>> s.topic_events
'demand.events'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "DEMANDSTREAM_"


class Settings(BaseSettings):
    """Runtime configuration shared by the worker, trainer, insights job and tools."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka transport security protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL username.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (a secret).")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers (SSL/SASL_SSL).")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key for mutual TLS.")
    consumer_group: str = Field("demandstream-workers", description="Consumer group of the stream workers.")
    topic_events: str = Field("demand.events", description="Input topic of behaviour events (key = user id).")
    topic_predictions: str = Field("demand.predictions", description="Output topic of demand predictions.")
    topic_dlq: str = Field("demand.events.dlq", description="Dead-letter topic for invalid events.")
    topic_partitions: int = Field(6, ge=1, description="Partition count used when this project creates topics.")
    topic_replication: int = Field(1, ge=1, description="Replication factor used when this project creates topics.")
    topic_retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=60_000, description="Retention of created topics.")
    kafka_session_timeout_ms: int = Field(10_000, ge=1000, description="Consumer group session timeout.")
    kafka_fetch_max_wait_ms: int = Field(
        5,
        ge=1,
        le=500,
        description=(
            "Longest time the broker may hold a fetch that found nothing. Brokers that answer only when "
            "it ends (tansu) add up to this much latency per event; Apache Kafka answers as soon as data arrives."
        ),
    )

    # --- Redis -----------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (redis:// or rediss:// for TLS).")
    redis_password: SecretStr | None = Field(None, description="Redis password (a secret); overrides the URL's.")
    redis_ssl_ca_file: Path | None = Field(None, description="CA bundle to verify Redis over TLS.")
    redis_cluster: bool = Field(False, description="Use the Redis Cluster client (keys carry {user} hash tags).")
    redis_key_prefix: str = Field("ds", description="Prefix of every Redis key this project writes.")

    # --- Per-user window and state ---------------------------------------------------------
    window_size: int = Field(100, ge=2, le=10_000, description="Most events kept in a user's window.")
    window_max_age_s: int = Field(14 * 24 * 3600, ge=60, description="Events older than this leave the window.")
    user_ttl_s: int = Field(
        30 * 24 * 3600, ge=60, description="Idle users' window and state expire after this (retention)."
    )

    # --- Processing ------------------------------------------------------------------------
    # Caps only a backlog's batches (live traffic forms smaller ones within the linger): per-batch
    # costs (commit, produce requests, Redis round trips, one state write per user) are spread
    # over 4x the events of 256, which cut worker CPU per event ~25% (docs/worker.md, State v2).
    batch_max_size: int = Field(1024, ge=1, le=65_536, description="Most events per micro-batch.")
    batch_linger_ms: int = Field(20, ge=0, le=10_000, description="Longest wait to fill a micro-batch.")
    max_event_bytes: int = Field(16_384, ge=256, description="Payloads larger than this are invalid (DLQ).")
    worker_max_held_users: int = Field(
        10_000,
        ge=0,
        description="Users of its partitions a worker holds in memory between batches (window + model state; "
        "~59 KiB each at full 100-event windows, bench.held_memory: ~575 MiB at the default). Others are "
        "loaded from Redis when they come back; 0 = load every batch's users from Redis.",
    )
    worker_force_rebuild: bool = Field(
        False, description="Recompute every event's state from its whole window (benchmark baseline; slow)."
    )
    future_skew_s: int = Field(24 * 3600, ge=0, description="Events further than this in the future are invalid.")
    min_event_ts_ms: int = Field(
        946_684_800_000, ge=0, description="Events older than this epoch-ms are invalid (default 2000-01-01)."
    )

    retry_backoff_start_s: float = Field(
        0.1, gt=0, le=60, description="First wait of the one retry policy (Redis, Kafka, model loading)."
    )
    retry_backoff_max_s: float = Field(
        5.0, gt=0, le=300, description="Longest wait of the retry policy (the wait doubles up to it, plus jitter)."
    )
    model_load_attempts: int = Field(
        4, ge=1, le=100, description="Tries to read a model version before an I/O error waits for the next poll."
    )

    # --- Model registry --------------------------------------------------------------------
    model_registry: Path = Field(Path("models"), description="Directory of the versioned model registry.")
    model_poll_interval_s: float = Field(5.0, gt=0, description="How often workers check the registry pointer.")

    # --- Observability and privacy ---------------------------------------------------------
    http_host: str = Field(
        "127.0.0.1",
        description="Bind address of the metrics/health endpoint (containers set 0.0.0.0 to be scraped).",
    )
    http_port: int = Field(9108, ge=0, le=65_535, description="Port of the metrics/health endpoint (0 = off).")
    latency_horizon_s: float = Field(
        300.0,
        gt=0,
        description="Events older than this at publish count as backfill, not in the e2e latency histogram.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_json: bool = Field(False, description="Emit structured JSON log lines.")
    pseudonymize_users: bool = Field(False, description="HMAC user ids before they reach Redis or logs.")
    user_hmac_key: SecretStr | None = Field(None, description="Key for user-id pseudonymisation (a secret).")

    # --- Online evaluation ------------------------------------------------------------------
    evaluation_group: str = Field(
        "demandstream-evaluate", description="Consumer group of `demandstream evaluate` (events + predictions)."
    )
    evaluation_port: int = Field(9110, ge=0, le=65_535, description="Port of the evaluator's /metrics (0 = off).")
    evaluation_shadow_sample: float = Field(
        0.1, ge=0.0, le=1.0, description="Share of users (stable by id) on whom shadow model versions run."
    )
    evaluation_window_s: int = Field(
        2 * 24 * 3600, ge=60, description="Event-time window of the evaluator's online metrics gauges."
    )

    # --- Insights ---------------------------------------------------------------------------
    insights_bucket_s: int = Field(3600, ge=60, description="Time bucket of demand aggregates.")
    insights_retention_buckets: int = Field(24 * 14, ge=2, description="Buckets of aggregates kept.")
    insights_port: int = Field(8050, ge=1, le=65_535, description="Port of the insights dashboard (`insights serve`).")

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        if self.pseudonymize_users and self.user_hmac_key is None:
            raise ValueError("DEMANDSTREAM_PSEUDONYMIZE_USERS needs DEMANDSTREAM_USER_HMAC_KEY")
        if self.kafka_security_protocol.startswith("SASL") and self.kafka_sasl_mechanism is None:
            raise ValueError("a SASL protocol needs DEMANDSTREAM_KAFKA_SASL_MECHANISM")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()

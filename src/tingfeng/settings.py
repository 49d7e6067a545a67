"""The one place that reads the environment and the configuration file.

Every other module receives a `Settings` object. Each setting has a default and a help line;
`docs/configuration.md` is checked against this list by the test suite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_ENV = "TINGFENG_CONFIG"
DEFAULT_CONFIG_FILE = "tingfeng.toml"


class Settings(BaseSettings):
    """Tingfeng's configuration: environment `TINGFENG_<NAME>`, then `tingfeng.toml`, then defaults."""

    model_config = SettingsConfigDict(env_prefix="TINGFENG_", extra="forbid", frozen=False)

    database_url: str = Field(
        "sqlite:///var/tingfeng.db",
        description="SQLAlchemy URL of the database: sqlite:///FILE (embedded) or "
        "postgresql+psycopg://USER:PASS@HOST/DB (scale-out).",
    )
    queue_url: str = Field(
        "",
        description="Work queue: empty for the embedded queue (a SQLite file beside the data "
        "directory, durable across restarts), or redis://HOST:PORT/DB for scale-out.",
    )
    data_dir: Path = Field(
        Path("var"), description="Directory for the embedded queue file and other local state."
    )
    default_timezone: str = Field(
        "Asia/Shanghai",
        description="Time zone for sources that give local times without one (a source may set "
        "its own). Times are stored in UTC.",
    )
    web_host: str = Field("127.0.0.1", description="Address the web server listens on.")
    web_port: int = Field(8000, description="Port the web server listens on.")
    workers: int = Field(
        4, description="Worker threads of the queue consumer (fetches wait on the network)."
    )
    scheduler_tick_s: float = Field(
        1.0, description="How often the scheduler looks for sources that are due, in seconds."
    )
    worker_alive_s: int = Field(
        20,
        ge=3,
        description="Scale-out: a worker silent this long (seconds) is taken for dead, and the "
        "queued tasks it held are put back for the others.",
    )
    fetch_user_agent: str = Field(
        "Tingfeng/0.1 (+public-opinion monitoring; respects robots.txt)",
        description="User-Agent sent with every request; also the name matched in robots.txt.",
    )
    fetch_connect_timeout_s: float = Field(10.0, description="Connect timeout per request.")
    fetch_read_timeout_s: float = Field(
        30.0, description="Read timeout per request (no byte for this long fails the request)."
    )
    fetch_total_timeout_s: float = Field(
        60.0, description="Upper bound on one request including a slow trickle of bytes."
    )
    fetch_max_bytes: int = Field(
        10 * 1024 * 1024, description="Largest response body accepted; larger ones are refused."
    )
    fetch_max_redirects: int = Field(5, description="Redirects followed before giving up.")
    fetch_retries: int = Field(
        2,
        description="Retries after a timeout, connection error, 429 or 5xx (exponential backoff).",
    )
    fetch_backoff_s: float = Field(
        1.0, description="First retry delay; doubles each retry, with jitter."
    )
    fetch_per_host_concurrency: int = Field(2, description="Parallel requests to one host at most.")
    fetch_per_host_interval_s: float = Field(
        1.0, description="Minimum seconds between the starts of two requests to one host."
    )
    fetch_respect_robots: bool = Field(True, description="Obey robots.txt of every site.")
    fetch_allowed_networks: list[str] = Field(
        default_factory=list,
        description='Private networks user-supplied URLs may reach, e.g. ["127.0.0.0/8"]. '
        "Empty: private, loopback, link-local and metadata addresses are refused.",
    )
    segment_user_dict: Path | None = Field(
        None,
        description="Extra words for Chinese segmentation, one per line (word [freq] [tag]); "
        "default: user_dict.txt in the data directory (`tingfeng dict add` writes there).",
    )
    dedup_threshold: float = Field(
        0.7,
        description="Jaccard similarity of character shingles above which posts are near-duplicates.",
    )
    dedup_num_perm: int = Field(
        64, description="MinHash permutations for near-duplicate detection."
    )
    dedup_window_posts: int = Field(
        200_000,
        description="Near-duplicate memory: how many recent posts are compared against (bounds RAM).",
    )
    dedup_min_chars: int = Field(
        8,
        description="Posts shorter than this (after stripping repost chains) only get exact matching.",
    )
    ingest_batch_size: int = Field(
        5000,
        description="Posts analysed and stored per transaction (larger batches write each index "
        "page once for more posts).",
    )
    prepare_processes: int = Field(
        1,
        description="Helper processes that analyse posts of a large ingest, or of a pushed "
        "batch, while the storing process stores the one before; 0 analyses in the storing "
        "process.",
    )
    push_helper_min_posts: int = Field(
        20,
        ge=1,
        description="Pushed batches of at least this many posts are analysed by a helper process "
        "(prepare_processes); smaller ones in the web process, where the trip costs more than "
        "it saves.",
    )
    match_topics_on_ingest: bool = Field(
        True,
        description="Match every stored post against the enabled topics and group matched posts "
        "into events as they arrive. Off: only `tingfeng topics rematch` matches.",
    )
    event_window_hours: float = Field(
        72.0,
        gt=0,
        le=24 * 60,
        description="An event stays open to new posts joining by content for this long after its "
        "latest post (reposts and duplicates of its posts always join).",
    )
    event_refresh_s: float = Field(
        60.0,
        ge=0,
        description="At most this often an event's profile and grade are recomputed while it "
        "grows (sooner when it has grown by a fifth).",
    )
    grading_model: str = Field(
        "",
        description="A JSON file with the grading model (factors, weights, thresholds); empty "
        "for the built-in defaults (docs/events-spread-grading.md).",
    )
    hot_mode_level: Literal["general", "serious", "major", "critical"] = Field(
        "serious",
        description="An event that rises to this level or above (general, serious, major, "
        "critical: 一般/较大/重大/特大), or spikes, puts the polled sources of its posts into "
        "hot mode: they are fetched at their hot interval (docs/sources.md).",
    )
    hot_mode_minutes: int = Field(
        120,
        ge=0,
        le=7 * 24 * 60,
        description="How long a hot event keeps its sources in hot mode; 0: events never "
        "switch sources (`tingfeng source hot` still does by hand).",
    )
    analyze_on_ingest: bool = Field(
        True,
        description="Read every post as it is stored (polarity, emotion, keywords, entities, "
        "regions, categories, credibility). Off: run `tingfeng reanalyze` later.",
    )
    polarity_model_zh: str = Field(
        "",
        description="A stronger local model for Chinese polarity instead of the built-in one: an "
        "ONNX model directory (model.onnx, tokenizer.json, config.json) or a .npz linear model.",
    )
    polarity_model_en: str = Field(
        "",
        description="The same for English polarity; `polarity-en-linear` names the shipped "
        "linear model, about 170 times faster than the built-in transformer and 5 points less "
        "accurate (for streams of many English posts on few cores).",
    )
    emotion_model: str = Field(
        "", description="The same for Chinese emotion (labels: the six SMP2020-EWECT emotions)."
    )
    model_label_map: dict[str, str] = Field(
        default_factory=dict,
        description="Renames a local model's labels to Tingfeng's (e.g. LABEL_0 = \"negative\").",
    )
    credibility_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description='Probability above which a post is flagged "needs verification".',
    )
    public_url: str = Field(
        "",
        description="The address people use to reach this Tingfeng (for links in alert messages), "
        "e.g. https://yq.example.gov.cn. Empty: http://WEB_HOST:WEB_PORT.",
    )
    secret_key: str = Field(
        "",
        description="Signs acknowledge links in messages. Empty: a random key is made once and kept "
        "in DATA_DIR/secret_key. Set the same value on every machine of a scale-out setup.",
    )
    alert_language: str = Field(
        "zh", pattern="^(zh|en)$", description="Language of alert messages: zh or en."
    )
    smtp_host: str = Field("", description="Mail server for e-mail alerts; empty: no e-mail.")
    smtp_port: int = Field(25, description="Mail server port (587 for STARTTLS, 465 for SSL).")
    smtp_security: str = Field(
        "none", pattern="^(none|starttls|ssl)$", description="none, starttls or ssl."
    )
    smtp_username: str = Field("", description="Mail server user name, if it wants one.")
    smtp_password: str = Field("", description="Mail server password.")
    smtp_from: str = Field(
        "tingfeng@localhost", description="Sender address of e-mail alerts (From:)."
    )
    delivery_timeout_s: float = Field(
        10.0, description="Seconds one message may take to send before it counts as failed."
    )
    delivery_max_attempts: int = Field(
        20,
        ge=1,
        description="Attempts before a message is given up as failed (shown on the alerts page); "
        "with the default backoff that is about a day.",
    )
    delivery_backoff_s: float = Field(
        2.0, description="Wait after the first failed attempt; doubles after each further one."
    )
    delivery_max_backoff_s: float = Field(
        3600.0, description="Longest wait between two attempts of one message."
    )
    outbox_poll_s: float = Field(
        1.0,
        description="How often a worker looks at the outbox for messages that other processes "
        "wrote (in one process new alerts wake it at once).",
    )
    outbox_wake: bool = Field(
        True,
        description="Wake the sender of this process as soon as alerts are written. Off: it only "
        "polls (the benchmark's baseline).",
    )
    evidence_on_alert: Literal["off", "general", "serious", "major", "critical"] = Field(
        "serious",
        description="Capture the post behind each new alert at this level or above (general, "
        "serious, major, critical: 一般/较大/重大/特大) as evidence (WARC + screenshot) within "
        "seconds, before it can be deleted; off: only by hand (docs/evidence.md).",
    )
    alert_clock_s: float = Field(
        10.0, description="How often escalations, digests and missing shift reports are checked."
    )
    duty_report_grace_minutes: int = Field(
        30, description="Minutes after a shift ends before its missing report is alerted."
    )
    office_hours: str = Field(
        "08:30-12:00,14:00-17:30",
        description="Office hours on working days, for deadlines given in working hours "
        "(comma-separated HH:MM-HH:MM spans, local time).",
    )
    case_reminder_minutes: int = Field(
        60, description="How long before a case deadline its people are reminded."
    )
    relapse_watch_days: float = Field(
        7.0, description="Days a closed case's event is watched for a relapse."
    )
    relapse_factor: float = Field(
        2.0,
        description="A closed case reopens when the event's negative posts in a day reach this "
        "many times the day before closing (and at least relapse_min_posts).",
    )
    relapse_min_posts: int = Field(
        10, description="Fewest negative posts in a day that can count as a relapse."
    )
    board_enabled: bool = Field(
        False, description="Serve the public message board (留言板) at /board."
    )
    board_title: str = Field("网上留言板", description="Heading of the public message board.")
    board_per_hour: int = Field(
        5, description="Messages one address may leave on the board per hour."
    )
    evidence_dir: Path | None = Field(
        None, description="Where captured evidence is kept; default: evidence/ in the data dir."
    )
    session_idle_minutes: int = Field(
        480, description="A signed-in browser is signed out after this long without use."
    )
    session_max_hours: int = Field(
        24, description="A browser session ends this long after signing in, used or not."
    )
    login_max_failures: int = Field(
        5, description="Wrong passwords in a row before an account is locked."
    )
    login_lock_minutes: int = Field(
        15, description="How long an account stays locked after too many wrong passwords."
    )
    pseudonymize_authors_at_ingest: bool = Field(
        False,
        description="Store new posts with their author's byline already replaced by its keyed "
        "pseudonym (作者-…; see docs/privacy.md). Older posts: the pseudonymisation policy on "
        "the administration page.",
    )
    report_office: str = Field(
        "网络舆情管理办公室",
        description="The issuing office printed in the header of reports (报告的发文单位).",
    )
    report_templates_dir: Path | None = Field(
        None,
        description="A directory of report templates (daily.html, periodic.html, quarterly.html, "
        "special.html, zero.html, base.html) that replace the built-in ones of the same name.",
    )
    reports_dir: Path | None = Field(
        None, description="Where generated reports are kept; default: reports/ in the data dir."
    )
    report_schedule: str = Field(
        "",
        description="Reports made and sent by the clock, comma-separated KIND@HH:MM in local time "
        "(daily@08:00, weekly@08:30 on Mondays, monthly@09:00 on the 1st); empty: none.",
    )
    report_format: str = Field(
        "docx", pattern="^(docx|pdf|html|xlsx)$", description="Format of scheduled reports."
    )
    report_email: str = Field(
        "", description="Addresses scheduled reports are e-mailed to (comma-separated)."
    )
    report_channels: str = Field(
        "",
        description="Warning channels (ids or names, comma-separated) told when a scheduled "
        "report is ready, with its download link.",
    )
    report_llm_url: str = Field(
        "",
        description="Optional language-model summaries in reports: the base URL of an "
        "OpenAI-compatible API (e.g. http://127.0.0.1:8080/v1); empty: extractive summaries only.",
    )
    report_llm_model: str = Field("", description="The model name sent to report_llm_url.")
    report_llm_api_key: str = Field(
        "", description="Bearer key for report_llm_url, if it wants one."
    )
    report_llm_timeout_s: float = Field(
        60.0, description="Seconds a summary from the language model may take."
    )
    log_level: str = Field("INFO", description="Logging level.")
    log_format: str = Field(
        "text",
        pattern="^(text|json)$",
        description="text (for people), or json: one JSON object per line with time, level, "
        "logger, message, process role and pid (for a log collector).",
    )
    metrics_token: str = Field(
        "",
        description="Bearer token Prometheus sends to read /metrics from anywhere "
        "(`Authorization: Bearer …`); empty: only metrics_networks and signed-in "
        "administrators may read it.",
    )
    metrics_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Addresses that may read /metrics without a token when they connect "
        "directly (a request forwarded by a proxy needs the token).",
    )
    disk_free_min_mb: int = Field(
        500,
        ge=0,
        description="Free space under which /readyz reports the disk of the data directory (and "
        "of the SQLite database) as full, in MB.",
    )
    clock_skew_max_s: float = Field(
        30.0,
        gt=0,
        description="Difference between this machine's clock and the database's beyond which "
        "/readyz reports the clock as wrong, in seconds.",
    )
    readiness_timeout_s: float = Field(
        5.0,
        gt=0,
        description="How long /readyz waits for the database's write lock and for the queue "
        "before reporting them as locked or unreachable, in seconds (an ingest batch holds "
        "SQLite's write lock for a second or two).",
    )

    @field_validator("fetch_allowed_networks", "metrics_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("metrics_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{network!r} is not a network: write it as an address or ADDRESS/BITS, "
                    'e.g. "10.0.0.0/8"'
                ) from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )

    @property
    def is_embedded_queue(self) -> bool:
        return not self.queue_url

    @property
    def user_dict_file(self) -> Path:
        return self.segment_user_dict or self.data_dir / "user_dict.txt"

    @property
    def queue_file(self) -> Path:
        return self.data_dir / "queue.db"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the configuration file, with explicit overrides on top."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)

"""The JSON shapes of the HTTP API: pydantic models mirroring the public protos, so the OpenAPI doc is complete."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from audiosearch.web.errors import ErrorDetail

ModelT = TypeVar("ModelT", bound=BaseModel)


def from_proto(model: type[ModelT], message: Message) -> ModelT:
    """Proto3 JSON of `message` (field names as in the proto, defaults included) validated into `model`."""
    return model.model_validate(
        MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True))


UNTRAINED = ("True when the weights are a seeded random init (version \"untrained-seed<N>\"; tests and offline "
             "demos): its embeddings still find the same sound again, but its AudioSet tags are meaningless, the "
             "probabilities of an untrained classifier rather than classifications")


class ModelIdentity(BaseModel):
    name: str = Field(description='Model name, e.g. "panns_cnn14"')
    version: str = Field(description='Checkpoint identity, e.g. "sha256=..." or "untrained-seed0"')
    embedding_dim: int
    sample_rate_hz: int
    untrained: bool = Field(default=False, description=UNTRAINED)


class SegmentConfig(BaseModel):
    window_seconds: float
    hop_seconds: float


class Collection(BaseModel):
    name: str
    description: str = ""
    model: ModelIdentity | None = None
    segment_config: SegmentConfig | None = None
    score_threshold: float = Field(description="Score below which a candidate is not a match")
    threshold_source: str = ""
    landmark_threshold: int = Field(default=0, description="Aligned landmarks at or above which a candidate is a "
                                                           "match whatever its score, once its landmark_share also "
                                                           "reaches landmark_share_threshold; 0: landmarks alone "
                                                           "never are")
    landmark_share_threshold: float = Field(default=0.0, description="The landmark_share a candidate needs beside "
                                                                     "landmark_threshold landmarks; 0: the count "
                                                                     "alone decides")
    audio_count: int = Field(description="Number of ready recordings")
    create_time: datetime | None = None


class Tag(BaseModel):
    label: str = Field(examples=["Siren"])
    score: float = Field(ge=0.0, le=1.0)


class TimeRange(BaseModel):
    start_seconds: float
    end_seconds: float


AudioStatus = Literal["UNSPECIFIED", "PENDING", "READY", "DELETING", "FAILED"]


class AudioRecord(BaseModel):
    id: str = Field(description="Opaque 32-character id")
    collection: str
    name: str
    sha256: str
    duration_seconds: float
    sample_rate_hz: int
    channels: int
    codec: str
    size_bytes: int
    metadata: dict[str, str] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list)
    status: AudioStatus
    segment_count: int
    create_time: datetime | None = None
    update_time: datetime | None = None

    @computed_field(description="Where the original bytes are served for playback")
    @property
    def content_url(self) -> str:
        return f"/v1/collections/{self.collection}/audio/{self.id}/content"

    @field_validator("status", mode="before")
    @classmethod
    def _short_status(cls, value: object) -> object:
        return value.removeprefix("AUDIO_STATUS_") if isinstance(value, str) else value


class CollectionList(BaseModel):
    collections: list[Collection]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last one")


class NewCollection(BaseModel):
    name: str = Field(description="1-63 characters of a-z, 0-9 and _, starting with a letter",
                      examples=["library"])
    description: str = ""
    window_seconds: float = Field(default=0.0, ge=0.0, description="0 takes the default (2 s)")
    hop_seconds: float = Field(default=0.0, ge=0.0, description="0 takes the default (2 s)")
    score_threshold: float = Field(default=0.0, description="0 takes the default")


class Calibration(BaseModel):
    target_false_positive_rate: float = Field(default=0.01, gt=0.0, lt=1.0)


class IngestResult(BaseModel):
    audio: AudioRecord
    already_existed: bool = Field(description="The same bytes were already in the collection; nothing was stored")


class Match(BaseModel):
    audio: AudioRecord
    score: float = Field(description="Similarity in [-1, 1]; higher is closer")
    reference_range: TimeRange = Field(description="Where the match sits in the recording")
    query_range: TimeRange = Field(description="Where the match sits in the query")
    matched_segments: int
    landmarks: int = Field(default=0, description="Landmarks (spectral peak pairs) of the query that line up with "
                                                  "the recording's at one time offset")
    landmark_share: float = Field(default=0.0, description="The share of the query's landmarks, over the part of "
                                                           "the query that lies on the recording, that line up (a "
                                                           "95 % lower confidence bound); it does not grow with the "
                                                           "query's length")
    decided_by: Literal["MATCH_EVIDENCE_UNSPECIFIED", "MATCH_EVIDENCE_EMBEDDING", "MATCH_EVIDENCE_LANDMARKS",
                        "MATCH_EVIDENCE_BOTH"] = Field(
        default="MATCH_EVIDENCE_UNSPECIFIED",
        description="Which evidence cleared the thresholds this search applied: the score, the landmarks, or both")


class SearchResult(BaseModel):
    matches: list[Match] = Field(description="Best first; empty means no recording cleared the threshold")
    score_threshold: float
    query_duration_seconds: float
    query_tags: list[Tag]
    model: ModelIdentity | None = Field(
        default=None, description="The collection's model, which computed the query's tags and the recordings' tags; "
                                  "when `model.untrained`, those tags are meaningless")


class SegmentTags(BaseModel):
    range: TimeRange
    tags: list[Tag]


class TagResult(BaseModel):
    tags: list[Tag]
    segments: list[SegmentTags]
    duration_seconds: float
    model: ModelIdentity | None = Field(
        default=None, description="The model the embedder serves, which computed the tags; when `model.untrained`, "
                                  "the tags are meaningless")


class AudioList(BaseModel):
    audios: list[AudioRecord]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last one")


class TagStatistics(BaseModel):
    label: str
    audio_count: int
    total_duration_seconds: float


class CollectionStats(BaseModel):
    audio_count: int
    total_duration_seconds: float
    segment_count: int
    tags: list[TagStatistics] = Field(description="Per tag, most frequent first")


class CalibrationResult(BaseModel):
    collection: Collection
    negative_queries: int
    positive_queries: int
    true_positive_rate: float
    false_positive_rate: float
    variant_queries: int = Field(default=0, description="Negative queries that found recordings sharing their "
                                                        "audio (variants): set aside, not counted as false positives")


class Health(BaseModel):
    status: Literal["SERVING", "NOT_SERVING"]
    gateway: str = Field(description="Gateway health as the gRPC health protocol reports it")


# The monitor's WebSocket messages (not operations, so listed in the OpenAPI document's schemas by app.py).

SampleFormat = Literal["s16le", "f32le"]


class RawAudioFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_rate_hz: int = Field(ge=1000, le=384000, examples=[48000])
    channels: int = Field(default=1, ge=1, le=32, description="Interleaved; mixed down to mono")
    sample_format: SampleFormat = Field(default="f32le", description="f32le: 32-bit floats; s16le: 16-bit integers")


class MonitorThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score_threshold: float | None = Field(default=None, ge=-1.0, le=1.0, description="Default: the collection's")
    landmark_threshold: int | None = Field(default=None, ge=0, description="Default: the collection's; 0 turns "
                                                                           "landmark detections off")
    landmark_share_threshold: float | None = Field(default=None, ge=0.0, le=1.0,
                                                   description="Default: the collection's")


class MonitorHeader(BaseModel):
    """The first message on the monitor socket (a text frame); the feed's bytes follow as binary frames."""

    model_config = ConfigDict(extra="forbid")

    feed_label: str = Field(default="", max_length=512, description="The feed's name, echoed in every detection")
    start_time: datetime | None = Field(default=None, description="Wall-clock time of the feed's first byte: "
                                                                  "detections then carry wall-clock times too")
    feed_offset_seconds: float = Field(default=0.0, ge=0.0, description="Feed seconds before the first byte "
                                                                        "(to resume a feed)")
    thresholds: MonitorThresholds = Field(default_factory=MonitorThresholds)
    tags: list[str] = Field(default_factory=list, description="Only recordings carrying every one of these tags")
    metadata: dict[str, str] = Field(default_factory=dict, description="Only recordings with these key=value pairs")
    raw_format: RawAudioFormat | None = Field(default=None, description="Set for headerless PCM; unset, the bytes "
                                                                        "are a container ffmpeg reads as a stream "
                                                                        "(wav, mp3, ogg, flac, AAC/ADTS, webm)")
    api_key: str = Field(default="", description="For browsers, which cannot set headers on a WebSocket; "
                                                 "`Authorization` or `X-API-Key` on the upgrade request also work")


DetectionState = Literal["STARTED", "ENDED"]


class MonitorDetection(BaseModel):
    detection_id: str = Field(description="The same in the STARTED and the ENDED message of one play")
    state: DetectionState = Field(description="STARTED when confirmed, ENDED with the final ranges")
    audio: AudioRecord = Field(description="The recording played (its `content_url` plays it)")
    feed_range: TimeRange = Field(description="Seconds from the feed's start (feed_offset_seconds included)")
    feed_start_time: datetime | None = Field(default=None, description="With the header's start_time")
    feed_end_time: datetime | None = Field(default=None, description="With the header's start_time")
    reference_range: TimeRange = Field(description="The part of the recording played")
    score: float
    landmarks: int
    landmark_share: float
    decided_by: str = Field(description="As Match.decided_by")
    feed_label: str

    @field_validator("state", mode="before")
    @classmethod
    def _short_state(cls, value: object) -> object:
        return value.removeprefix("DETECTION_STATE_") if isinstance(value, str) else value


class MonitorProgress(BaseModel):
    audio_seconds: float = Field(description="Feed seconds analysed (feed_offset_seconds included)")
    pending_seconds: float = Field(description="Feed seconds received, not yet analysed")
    elapsed_seconds: float
    real_time_factor: float = Field(description="Feed seconds analysed per second of wall time; above 1 keeps up")
    lag_seconds: float = Field(description="How far the analysis trails the feed")
    open_detections: int


class MonitorSummary(BaseModel):
    detections: int = Field(description="Plays detected (each sent STARTED, then ENDED)")
    audio_seconds: float = Field(description="Feed seconds analysed")


class MonitorEvent(BaseModel):
    """One text frame from the server: exactly one of its fields is set. `end` and `error` are the last."""

    detection: MonitorDetection | None = None
    progress: MonitorProgress | None = None
    end: MonitorSummary | None = Field(default=None, description="The feed ended and every play was reported")
    error: ErrorDetail | None = Field(default=None, description="As the HTTP API's errors; the socket then closes "
                                                                "with code 4000 + the HTTP status")

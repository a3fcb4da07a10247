"""The HTTP/JSON API against the real suite: a valid OpenAPI document, and every route in it exercised."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate

from devtools.support import sounds

pytestmark = pytest.mark.integration

COLLECTION = "web_api"
METHODS = {"get", "post", "put", "patch", "delete"}


def operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method in METHODS}


class Routes:
    """Calls routes by their OpenAPI template and remembers which ones were called."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.called: set[tuple[str, str]] = set()

    def __call__(self, method: str, template: str, expect: int, /, **kwargs: object) -> httpx.Response:
        path_params = {key: kwargs.pop(key) for key in ("collection", "audio_id") if key in kwargs}
        response = self.http.request(method, template.format(**path_params), **kwargs)
        assert response.status_code == expect, (method, template, response.status_code, response.text)
        self.called.add((method, template))
        return response


def wav(kind: str, seconds: float = 4.0, seed: int = 0) -> bytes:
    return sounds.to_bytes(sounds.synth(kind, seconds, seed=seed))


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "reason", "message", "metadata"}, body
    return body["error"]


def test_openapi_document_is_valid_and_describes_every_operation(http):
    document = http.get("/openapi.json").json()
    validate(document)
    assert operations(document) == {
        ("GET", "/healthz"),
        ("GET", "/v1/collections"), ("POST", "/v1/collections"),
        ("GET", "/v1/collections/{collection}"), ("DELETE", "/v1/collections/{collection}"),
        ("GET", "/v1/collections/{collection}/stats"), ("POST", "/v1/collections/{collection}/calibrate"),
        ("POST", "/v1/collections/{collection}/audio"), ("GET", "/v1/collections/{collection}/audio"),
        ("GET", "/v1/collections/{collection}/audio/{audio_id}"),
        ("DELETE", "/v1/collections/{collection}/audio/{audio_id}"),
        ("GET", "/v1/collections/{collection}/audio/{audio_id}/content"),
        ("POST", "/v1/collections/{collection}/search"), ("POST", "/v1/tag"),
    }
    not_found = document["paths"]["/v1/collections/{collection}"]["get"]["responses"]["404"]
    assert not_found["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody"
    assert "securitySchemes" in document["components"]


def test_docs_page_is_served_without_any_cdn(http):
    page = http.get("/docs")
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text
    assert "https://" not in page.text.replace("https://fastapi", "")
    assert http.get("/docs-static/swagger-ui-bundle.js").status_code == 200


def test_every_route_works_against_the_real_gateway(http):
    route = Routes(http)
    assert route("GET", "/healthz", 200).json() == {"status": "SERVING", "gateway": "SERVING"}

    created = route("POST", "/v1/collections", 201, json={"name": COLLECTION, "description": "web test"}).json()
    assert created["model"]["name"] == "panns_cnn14"
    assert created["segment_config"] == {"window_seconds": 2.0, "hop_seconds": 2.0}
    listed = route("GET", "/v1/collections", 200, params={"page_size": 1000}).json()
    assert COLLECTION in [c["name"] for c in listed["collections"]]
    assert route("GET", "/v1/collections/{collection}", 200, collection=COLLECTION).json()["description"] == "web test"

    library = {}
    for seed, kind in enumerate(["siren", "chord", "drums", "rain", "birds", "morse"]):
        data = wav(kind, seed=seed)
        reply = route("POST", "/v1/collections/{collection}/audio", 201, collection=COLLECTION,
                      files={"file": (f"{kind}.wav", data, "audio/wav")}, data={"meta": [f"kind={kind}", "src=web"]})
        record = reply.json()["audio"]
        assert reply.json()["already_existed"] is False
        assert record["status"] == "READY"
        assert record["metadata"] == {"kind": kind, "src": "web"}
        assert record["content_url"] == f"/v1/collections/{COLLECTION}/audio/{record['id']}/content"
        library[kind] = (record, data)
    siren, siren_bytes = library["siren"]
    again = route("POST", "/v1/collections/{collection}/audio", 200, collection=COLLECTION,
                  files={"file": ("again.wav", siren_bytes, "audio/wav")})
    assert again.json() | {"audio": None} == {"audio": None, "already_existed": True}
    assert again.json()["audio"]["id"] == siren["id"]

    page = route("GET", "/v1/collections/{collection}/audio", 200, collection=COLLECTION,
                 params={"page_size": 2}).json()
    assert len(page["audios"]) == 2
    assert page["next_page_token"]
    by_meta = route("GET", "/v1/collections/{collection}/audio", 200, collection=COLLECTION,
                    params={"meta": "kind=siren"}).json()
    assert [a["id"] for a in by_meta["audios"]] == [siren["id"]]
    tag = siren["tags"][0]["label"]
    by_tag = http.get(f"/v1/collections/{COLLECTION}/audio", params={"tag": tag}).json()
    assert siren["id"] in [a["id"] for a in by_tag["audios"]]

    got = route("GET", "/v1/collections/{collection}/audio/{audio_id}", 200, collection=COLLECTION,
                audio_id=siren["id"]).json()
    assert got == siren | {"update_time": got["update_time"]}
    content = route("GET", "/v1/collections/{collection}/audio/{audio_id}/content", 200, collection=COLLECTION,
                    audio_id=siren["id"])
    assert content.content == siren_bytes
    assert content.headers["content-type"] == "audio/wav"

    excerpt = sounds.to_bytes(sounds.synth("siren", 4.0, seed=0)[int(1.0 * sounds.RATE):int(3.5 * sounds.RATE)])
    result = route("POST", "/v1/collections/{collection}/search", 200, collection=COLLECTION,
                   files={"clip": ("clip.wav", excerpt, "audio/wav")},
                   params={"top_k": 3, "min_score": -1.0}).json()
    assert len(result["matches"]) == 3
    top = result["matches"][0]
    assert top["audio"]["id"] == siren["id"]
    assert top["score"] > 0.5
    assert top["reference_range"]["start_seconds"] == pytest.approx(1.0, abs=1.0)
    assert result["query_duration_seconds"] == pytest.approx(2.5, abs=0.01)
    filtered = http.post(f"/v1/collections/{COLLECTION}/search", files={"clip": ("c.wav", excerpt)},
                         params={"min_score": -1.0, "meta": "kind=chord"}).json()
    assert [m["audio"]["name"] for m in filtered["matches"]] == ["chord.wav"]

    tags = route("POST", "/v1/tag", 200, files={"clip": ("clip.wav", siren_bytes)}, params={"top_k": 4}).json()
    assert len(tags["tags"]) == 4
    assert len(tags["segments"]) == 2  # 4 s in 2 s windows every 2 s

    stats = route("GET", "/v1/collections/{collection}/stats", 200, collection=COLLECTION).json()
    assert stats["audio_count"] == len(library)
    assert stats["total_duration_seconds"] == pytest.approx(4.0 * len(library), abs=0.1)

    calibrated = route("POST", "/v1/collections/{collection}/calibrate", 200, collection=COLLECTION,
                       json={"target_false_positive_rate": 0.05}).json()
    assert calibrated["negative_queries"] > 0
    assert calibrated["positive_queries"] > 0
    assert calibrated["collection"]["threshold_source"] != "default"

    route("DELETE", "/v1/collections/{collection}/audio/{audio_id}", 204, collection=COLLECTION,
          audio_id=siren["id"])
    gone = http.get(f"/v1/collections/{COLLECTION}/audio/{siren['id']}")
    assert (gone.status_code, error_of(gone)["reason"]) == (404, "AUDIO_NOT_FOUND")
    assert http.get(siren["content_url"]).status_code == 404
    assert http.delete(f"/v1/collections/{COLLECTION}/audio/{siren['id']}").status_code == 204  # idempotent

    route("DELETE", "/v1/collections/{collection}", 204, collection=COLLECTION)
    missing = http.get(f"/v1/collections/{COLLECTION}")
    assert (missing.status_code, error_of(missing)["reason"]) == (404, "COLLECTION_NOT_FOUND")

    assert route.called == operations(http.get("/openapi.json").json())


def test_unknown_collection_is_404_with_its_reason(http):
    response = http.post("/v1/collections/no_such_collection/search", files={"clip": ("c.wav", wav("siren", 1.0))})
    assert response.status_code == 404
    error = error_of(response)
    assert (error["code"], error["reason"]) == ("NOT_FOUND", "COLLECTION_NOT_FOUND")
    assert error["message"]


def test_gateway_refusals_keep_their_reasons(http):
    http.post("/v1/collections", json={"name": "web_errors"})
    duplicate = http.post("/v1/collections", json={"name": "web_errors"})
    assert (duplicate.status_code, error_of(duplicate)["reason"]) == (409, "COLLECTION_EXISTS")
    bad_audio = http.post("/v1/collections/web_errors/audio", files={"file": ("x.mp3", b"not audio at all" * 100)})
    assert (bad_audio.status_code, error_of(bad_audio)["reason"]) == (400, "INVALID_AUDIO")
    bad_name = http.get("/v1/collections/Bad-Name")
    assert bad_name.status_code == 400
    assert error_of(bad_name)["metadata"] == {"field": "collection"}
    bad_id = http.get("/v1/collections/web_errors/audio/nope")
    assert (bad_id.status_code, error_of(bad_id)["metadata"]) == (400, {"field": "audio_id"})


def test_request_mistakes_answer_400_in_the_same_shape(http):
    too_many = http.post("/v1/collections/web_errors/search", params={"top_k": 1000},
                         files={"clip": ("c.wav", wav("siren", 1.0))})
    assert too_many.status_code == 400
    assert error_of(too_many)["reason"] == "INVALID_FIELD"
    assert error_of(too_many)["metadata"] == {"field": "top_k"}
    no_clip = http.post("/v1/collections/web_errors/search")
    assert (no_clip.status_code, error_of(no_clip)["metadata"]) == (400, {"field": "clip"})
    bad_meta = http.get("/v1/collections/web_errors/audio", params={"meta": "no-equals-sign"})
    assert (bad_meta.status_code, error_of(bad_meta)["metadata"]) == (400, {"field": "meta"})


def test_the_page_is_served_with_a_same_origin_policy(http):
    page = http.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/app.js"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        body = http.get(asset)
        assert body.status_code == 200
        assert "http://" not in body.text
        assert "https://" not in body.text

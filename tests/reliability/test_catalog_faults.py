"""Catalog faults through the fault proxy (``tests/fixtures/faults.py``) in front of the real sample STAC API: every
STAC request crofuse makes is retried on the HTTP status (not on the body's words), with backoff, inside one total
deadline; what is left over is a ``CatalogError`` with the status as data, which ``flows.tasks.is_transient``
reads. Deadlines here are a few seconds so the suite stays fast."""

from __future__ import annotations

import dataclasses
import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

from crofuse.cube import CubeConfig, get_profile
from crofuse.cube.search import Query, open_catalog, search_collection, search_season
from crofuse.cube.stac_client import list_collections, search_items
from crofuse.errors import CatalogDeadlineError, CatalogError, ConfigError, SigningError
from flows.tasks import is_transient
from tests.fixtures.faults import JSON_503, Fault, FaultProxy

pytestmark = pytest.mark.timeout(120)

SMALL_AOI = (114.296, 30.586, 114.302, 30.592)  # ~0.6 km inside the session catalog's Wuhan square
SLACK = 1.5  # seconds a deadline may be overrun by (thread scheduling on a loaded 2-core machine)


def _cfg(url: str, **kw) -> CubeConfig:
    return CubeConfig(**({"city": "wuhan", "year": 2022, "aoi": SMALL_AOI, "catalog": url, "chunk_size": 64,
                          "http_timeout": 2.0, "catalog_deadline": 10.0} | kw))


def _timed(fn):
    t = time.monotonic()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - returned to the test, which asserts its type
        return e, time.monotonic() - t
    return None, time.monotonic() - t


# ------------------------------------------------------------------------------------- retried on the status
BODIES = {
    "json": Fault.status(503, JSON_503),
    "empty": Fault.status(503, ""),
    "text": Fault.status(503, "Service Unavailable", content_type="text/plain"),
    "502 html": Fault.status(502, "<html><body>Bad Gateway</body></html>", content_type="text/html"),
}


@pytest.mark.parametrize("body", BODIES)
def test_5xx_is_retried_whatever_the_body_says(fault_proxy: FaultProxy, body: str):
    """A 503 with a JSON, empty or text body (or a 502 page) on the landing page and on the search: retried, and
    the season search then succeeds."""
    fault_proxy.inject(BODIES[body], path="/", times=1)
    fault_proxy.inject(BODIES[body], path="/search", times=2)
    found = search_season(_cfg(fault_proxy.url))
    assert found.optical and found.sar
    assert len(fault_proxy.faults()) == 3


@pytest.mark.parametrize("body", BODIES)
def test_permanent_5xx_is_a_transient_catalog_error_with_the_status(fault_proxy: FaultProxy, body: str):
    fault_proxy.inject(BODIES[body], path="/search")
    err, took = _timed(lambda: search_season(_cfg(fault_proxy.url, http_retries=2)))
    assert isinstance(err, CatalogError) and not isinstance(err, CatalogDeadlineError)
    code = BODIES[body].code
    assert err.status == code and err.transient is True
    assert is_transient(err), "the flow's retry policy decides on the status, whatever the body"
    msg = str(err)
    assert f"HTTP {code}" in msg and "sentinel-2-l2a" in msg and "bbox=[114.29600" in msg and fault_proxy.url in msg
    assert len(fault_proxy.faults()) == 3  # the first try and 2 retries
    assert took < 10


def test_4xx_is_not_retried(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.status(400, '{"code": "BadRequest", "description": "bad bbox"}'), path="/search")
    err, _ = _timed(lambda: search_season(_cfg(fault_proxy.url)))
    assert isinstance(err, CatalogError) and err.status == 400 and err.transient is False
    assert not is_transient(err)
    assert "bad bbox" in str(err) and len(fault_proxy.faults()) == 1


def test_429_waits_for_its_retry_after(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.status(429, '{"message": "slow down"}', headers={"Retry-After": "1"}), path="/search",
                       times=1)
    found = search_season(_cfg(fault_proxy.url))
    assert found.optical and found.sar and fault_proxy.faults() == ["429"]
    searches = [s for s in fault_proxy.log if s.path.startswith("/search")]
    assert searches[1].at - searches[0].at >= 0.95, "the retry came before the Retry-After"


def test_retry_after_past_the_deadline_fails_at_once(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.status(429, "", headers={"Retry-After": "3600"}), path="/search")
    err, took = _timed(lambda: search_season(_cfg(fault_proxy.url, catalog_deadline=5)))
    assert isinstance(err, CatalogDeadlineError) and err.status == 429
    assert "retry after 3600 s" in str(err) and took < 2


def test_connection_reset_is_retried(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.reset(), path="/", times=1)
    fault_proxy.inject(Fault.reset(), path="/search", times=1)
    found = search_season(_cfg(fault_proxy.url))
    assert found.optical and found.sar and fault_proxy.faults() == ["reset", "reset"]


def test_slow_answer_times_out_and_is_sent_again(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.hang(3.0), path="/search", times=1)
    err, took = _timed(lambda: search_season(_cfg(fault_proxy.url, http_timeout=0.5)))
    assert err is None
    searches = [s for s in fault_proxy.log if s.path.startswith("/search")]
    assert searches[0].fault == "slow 3s" and searches[1].fault is None
    assert took < 3, "the slow request was not waited for"


# --------------------------------------------------------------------------------------------- the deadline
def test_hung_catalog_fails_within_the_deadline(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.hang())
    err, took = _timed(lambda: search_season(_cfg(fault_proxy.url, catalog_deadline=2, http_timeout=30)))
    assert isinstance(err, CatalogDeadlineError)
    assert f"the catalog at {fault_proxy.url} did not answer within 2 s" in str(err)
    assert "--catalog-deadline" in str(err)
    assert 2 <= took < 2 + SLACK
    assert not is_transient(err), "a deadline failure must not be retried again by Prefect"


def test_hang_on_a_later_page_fails_within_the_same_deadline(fault_proxy: FaultProxy, stac_api: str):
    q = Query(fault_proxy.url, "sentinel-1-rtc", SMALL_AOI, "2021-01-01T00:00:00Z/2022-12-31T23:59:59Z")
    fault_proxy.inject(Fault.hang(), path="/search", after=1)  # the first page answers, the second hangs
    client = open_catalog(fault_proxy.url, profile=get_profile("sample"), timeout=30, deadline=2)
    err, took = _timed(lambda: search_collection(client, q, max_items=100, page_size=2))
    assert isinstance(err, CatalogDeadlineError) and "did not answer within 2 s" in str(err)
    assert took < 2 + SLACK
    assert [s.fault for s in fault_proxy.log if s.path.startswith("/search")][:2] == [None, "hang"]


def test_deadline_covers_retries_and_pages(fault_proxy: FaultProxy):
    """Every page answers, slowly (0.6 s each): no request times out, yet the search as a whole runs out of time."""
    q = Query(fault_proxy.url, "sentinel-1-rtc", SMALL_AOI, "2021-01-01T00:00:00Z/2022-12-31T23:59:59Z")
    fault_proxy.inject(Fault.hang(0.6), path="/search")
    client = open_catalog(fault_proxy.url, profile=get_profile("sample"), timeout=5, deadline=3)
    err, took = _timed(lambda: search_collection(client, q, max_items=100, page_size=1))
    assert isinstance(err, CatalogDeadlineError) and "did not answer within 3 s" in str(err) and took < 3 + SLACK
    assert 2 <= len([s for s in fault_proxy.log if s.path.startswith("/search")]) <= 6, "more than one page asked"


def test_permanent_503_fails_within_the_deadline_with_the_status_named(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.status(503, JSON_503))
    err, took = _timed(lambda: search_season(_cfg(fault_proxy.url, http_retries=1000, catalog_deadline=3)))
    assert isinstance(err, CatalogDeadlineError) and err.status == 503
    assert "within 3 s (HTTP 503)" in str(err) and "Service Unavailable" in str(err)
    assert took < 3 + SLACK and len(fault_proxy.faults()) >= 3


def test_cli_fails_within_catalog_deadline_with_a_clear_message(fault_proxy: FaultProxy, tmp_path: Path):
    from typer.testing import CliRunner

    from crofuse_cli import app

    fault_proxy.inject(Fault.hang())
    args = ["cube", "wuhan", "--year", "2022", "--catalog", fault_proxy.url, "--out", str(tmp_path), "--bbox",
            *map(str, SMALL_AOI), "--no-progress", "--catalog-deadline", "2"]
    t = time.monotonic()
    res = CliRunner().invoke(app, args)
    took = time.monotonic() - t
    assert res.exit_code == 3, res.output  # a catalog error: exit 3
    assert f"the catalog at {fault_proxy.url} did not answer within 2 s" in res.output
    assert "Traceback" not in res.output and took < 2 + SLACK + 1


# ---------------------------------------------------------------------------------- the flows' retry policy
def test_is_transient_decides_on_status_and_type_never_on_words():
    import requests

    assert is_transient(CatalogError("Service Unavailable", status=503, transient=True))
    assert not is_transient(CatalogError("HTTP 503 (the words are not read)", status=404, transient=False))
    assert not is_transient(CatalogError("connection timed out 503 504 connection reset"))  # no data: not retried
    assert not is_transient(CatalogDeadlineError("did not answer within 2 s", transient=False))
    try:
        try:
            raise requests.ConnectionError("anything")
        except requests.ConnectionError as inner:
            raise CatalogError("search failed") from inner
    except CatalogError as wrapped:
        assert is_transient(wrapped), "no verdict of its own: the cause's type decides"

    class Answer(Exception):
        def __init__(self, status_code: int) -> None:
            super().__init__("x")
            self.status_code = status_code

    assert is_transient(Answer(502)) and is_transient(Answer(429)) and not is_transient(Answer(403))


def test_transient_errors_survive_pickling_with_their_data():
    """Prefect stores a failed task's exception; the status and the flag must come back with it."""
    import pickle

    from crofuse.cube.stac_client import _status_error

    err = _status_error("the catalog at X answered HTTP 503", status=503, transient=True, url="http://x")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, CatalogError) and back.status == 503 and back.transient and back.url == "http://x"
    assert back.status_code == 503 and is_transient(back)


# ------------------------------------------------------------------------------------ label-style lookups
def test_label_search_and_collection_listing_retry_too(fault_proxy: FaultProxy):
    """What flows/catalog.py does (open, list collections, search `labels` by year, read properties), on the
    library's transport: each 503 is retried."""
    fault_proxy.inject(Fault.status(503, JSON_503), path="/collections", times=2)
    assert {c.id for c in list_collections(fault_proxy.url, deadline=5)} >= {"labels", "sentinel-2-l2a"}
    fault_proxy.inject(Fault.status(503, ""), path="/search", times=2)
    items = search_items(fault_proxy.url, collections=["labels"], datetime="2022-01-01T00:00:00Z/2022-12-31T23:59:59Z",
                         deadline=5)
    assert [it.properties["crofuse:city"] for it in items] == ["wuhan"]
    assert items[0].datetime.year == 2022 or items[0].common_metadata.start_datetime.year == 2022
    assert fault_proxy.faults() == ["503"] * 4


def test_label_search_fails_as_a_catalog_error_within_the_deadline(fault_proxy: FaultProxy):
    fault_proxy.inject(Fault.status(503, JSON_503), path="/search")
    err, took = _timed(lambda: search_items(fault_proxy.url, collections=["labels"], deadline=2))
    assert isinstance(err, CatalogError) and err.status == 503 and took < 2 + SLACK
    assert "collections=['labels']" in str(err)
    fault_proxy.clear()
    fault_proxy.inject(Fault.hang(), path="/collections")
    err, took = _timed(lambda: list_collections(fault_proxy.url, deadline=2))
    assert isinstance(err, CatalogDeadlineError) and "did not answer within 2 s" in str(err) and took < 2 + SLACK


# ---------------------------------------------------------------------------------- Planetary Computer signing
PC_LIKE = dataclasses.replace(get_profile("sample"), name="pc-like", signing="planetary-computer")
TOKEN = {"msft:expiry": "2100-01-01T00:00:00Z", "token": "st=2000-01-01&se=2100-01-01&sp=rl&sig=crofuse-test"}


def test_missing_signing_package_is_named_as_what_it_is(stac_api: str, monkeypatch):
    for mod in [m for m in sys.modules if m == "planetary_computer" or m.startswith("planetary_computer.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "planetary_computer", None)  # import fails as if not installed
    with pytest.raises(ConfigError) as info:
        search_season(_cfg(stac_api, profile=PC_LIKE))
    msg = str(info.value)
    assert "pip install 'crofuse[planetary-computer]'" in msg and "--signing none" in msg
    assert "did not answer with a STAC catalog" not in msg and not isinstance(info.value, CatalogError)


@pytest.fixture(scope="module")
def blob_catalog(tmp_path_factory) -> Iterator[str]:
    """A 0.5 km sample catalog whose Sentinel-2 asset hrefs are Azure blob URLs (what Planetary Computer signs)."""
    from tests.fixtures.cube import build_small_catalog, served_catalog

    root = build_small_catalog(tmp_path_factory.mktemp("blob"), size_km=0.5)
    for p in (root / "sentinel-2-l2a").glob("*/*.json"):
        d = json.loads(p.read_text())
        for asset in d["assets"].values():
            asset["href"] = f"https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/{Path(asset['href']).name}"
        p.write_text(json.dumps(d))
    with served_catalog(root) as url:
        yield url


class _TokenService:
    """A loopback stand-in for the SAS token endpoint: GET /<account>/<container> answers a token."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                data = json.dumps(TOKEN).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_proxy(monkeypatch) -> Iterator[FaultProxy]:
    """Planetary Computer's SAS URL pointed at a fault proxy in front of a loopback token service."""
    pytest.importorskip("planetary_computer")
    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    with _TokenService() as service, FaultProxy(service.url) as proxy:
        monkeypatch.setattr(Settings.get(), "sas_url", f"{proxy.url}/api/sas/v1/token")
        TOKEN_CACHE.clear()
        yield proxy
        TOKEN_CACHE.clear()


def test_signing_tokens_go_through_the_transport_and_are_retried(blob_catalog: str, token_proxy: FaultProxy):
    from crofuse.synthetic import WUHAN
    from tests.fixtures.cube import inner_bbox

    token_proxy.inject(Fault.status(503, JSON_503), times=1)
    found = search_season(_cfg(blob_catalog, profile=PC_LIKE, aoi=inner_bbox(WUHAN, 0.5)))
    assert found.optical
    hrefs = [a.href for it in found.optical for a in it.assets.values()]
    assert all(h.endswith("?" + TOKEN["token"]) for h in hrefs if ".blob.core.windows.net" in h)
    assert [s.path for s in token_proxy.log] == ["/api/sas/v1/token/sentinel2l2a01/sentinel2-l2"] * 2  # 503, then ok


def test_hung_token_service_is_a_signing_error_within_the_deadline(blob_catalog: str, token_proxy: FaultProxy):
    from crofuse.synthetic import WUHAN
    from tests.fixtures.cube import inner_bbox

    token_proxy.inject(Fault.hang())
    cfg = _cfg(blob_catalog, profile=PC_LIKE, aoi=inner_bbox(WUHAN, 0.5), catalog_deadline=2, http_timeout=30)
    err, took = _timed(lambda: search_season(cfg))
    assert isinstance(err, SigningError), err
    msg = str(err)
    assert msg.startswith("signing asset URLs failed") and "did not answer within 2 s" in msg
    assert f"{token_proxy.url}/api/sas/v1/token/sentinel2l2a01/sentinel2-l2" in msg
    assert took < 2 + SLACK and not is_transient(err)


def test_unreachable_token_service_is_a_signing_error_not_a_search_error(blob_catalog: str, monkeypatch):
    pytest.importorskip("planetary_computer")
    import socket

    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    from crofuse.synthetic import WUHAN
    from tests.fixtures.cube import inner_bbox

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(Settings.get(), "sas_url", f"http://127.0.0.1:{port}/token")
    TOKEN_CACHE.clear()
    cfg = _cfg(blob_catalog, profile=PC_LIKE, aoi=inner_bbox(WUHAN, 0.5), http_retries=1, catalog_deadline=5)
    err, took = _timed(lambda: search_season(cfg))
    assert isinstance(err, SigningError) and "connection refused" in str(err)
    assert f"http://127.0.0.1:{port}/token/sentinel2l2a01/sentinel2-l2" in str(err) and took < 5
    assert "STAC search" not in str(err)


def test_signing_can_be_switched_off(blob_catalog: str, monkeypatch):
    """--signing none / signing='none': no token requests at all, even with the package missing."""
    from crofuse.synthetic import WUHAN
    from tests.fixtures.cube import inner_bbox

    monkeypatch.setitem(sys.modules, "planetary_computer", None)
    cfg = _cfg(blob_catalog, profile=PC_LIKE, signing="none", aoi=inner_bbox(WUHAN, 0.5))
    assert cfg.catalog_profile.signing == "none"
    found = search_season(cfg)
    assert found.optical and all("?" not in a.href for it in found.optical for a in it.assets.values())

"""The one transport every STAC request of crofuse goes through: retries on the HTTP status, backoff with jitter,
and a total deadline.

:class:`Transport` sends one request and retries it while the failure is one a retry can cure: HTTP 429 (waiting at
least its ``Retry-After``), 500, 502, 503, 504, connection refused/reset and timeouts, whatever the answer's body
says. Delays grow exponentially with "equal jitter" (half the exponential step plus a uniform random half; Brooker,
*Exponential Backoff And Jitter*, AWS Architecture Blog, 2015), so many clients do not retry in lock step. Every
request of one catalog interaction (opening the API, every page of every search, the collection listing, the
signing tokens) shares one :class:`Deadline`: each request's timeout is cut to what is left of it, and when it runs
out the interaction fails with :class:`~crofuse.errors.CatalogDeadlineError` ("the catalog at URL did not answer
within N s"). Failures carry the status code and a ``transient`` flag as data (:class:`~crofuse.errors.CatalogError`).

pystac-client reads through :class:`CatalogIO` (its ``StacApiIO`` with ``request`` sent by the transport), and
Planetary Computer signing fetches its SAS tokens through the same transport (:class:`PlanetaryComputerSigner`).
:func:`open_client`, :func:`search_items` and :func:`list_collections` are the generic entry points (the cube's
season search in :mod:`crofuse.cube.search` is built on them).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crofuse.errors import CatalogDeadlineError, CatalogError, ConfigError, SigningError

if TYPE_CHECKING:
    import pystac
    import pystac_client
    import requests

log = logging.getLogger(__name__)

RETRY_STATUS: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses a retry can cure (too many requests, server errors, bad gateway, unavailable, gateway timeout)."""

DEFAULT_DEADLINE = 120.0
"""Seconds one catalog interaction may take in all (``CubeConfig.catalog_deadline``, ``--catalog-deadline``)."""

PAGE_SIZE = 100


def is_transient_status(status: int | None) -> bool:
    """Can a retry cure an answer with this HTTP status?"""
    return status in RETRY_STATUS


@dataclass(frozen=True)
class RetryPolicy:
    """How one request is retried.

    ``retries``: retries after the first attempt; ``timeout``: connect and read timeout of one attempt (s), cut to
    what is left of the deadline; ``backoff``: the first retry waits between ``backoff/2`` and ``backoff`` seconds,
    each later one twice as long (equal jitter), at most ``max_backoff``; a 429/503 ``Retry-After`` is waited for
    when it is longer (and fails at once when it is past the deadline).
    """

    retries: int = 4
    timeout: float = 30.0
    backoff: float = 0.5
    max_backoff: float = 30.0

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds before retry number ``retry`` (1, 2, ...)."""
        step = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return step / 2 + rng.uniform(0, step / 2)


class Deadline:
    """A total time budget shared by every request of one catalog interaction (monotonic clock)."""

    def __init__(self, seconds: float = DEFAULT_DEADLINE) -> None:
        if not seconds > 0:
            raise ConfigError(f"catalog deadline {seconds!r}: give a positive number of seconds (e.g. 120)")
        self.seconds = float(seconds)
        self.start = time.monotonic()

    @classmethod
    def of(cls, deadline: float | Deadline | None) -> Deadline:
        """A Deadline from seconds (starting now), an existing Deadline (shared), or ``None`` (the default)."""
        if isinstance(deadline, Deadline):
            return deadline
        return cls(DEFAULT_DEADLINE if deadline is None else deadline)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()


def _retry_after(resp: requests.Response) -> float | None:
    """The ``Retry-After`` of a 429/503 answer in seconds (delta-seconds or an HTTP date), if any."""
    value = resp.headers.get("Retry-After")
    if resp.status_code not in (429, 503) or not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _excerpt(resp: requests.Response) -> str:
    text = (resp.text or "").strip().replace("\n", " ")
    return repr(text[:200]) if text else "an empty body"


def _reason(exc: BaseException) -> str:
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return "the connection timed out"
    if isinstance(exc, requests.Timeout):
        return "no answer before the read timeout"
    text = str(exc)
    for needle, reason in (("refused", "connection refused"), ("reset", "connection reset"),
                           ("aborted", "connection closed without an answer"),
                           ("RemoteDisconnected", "connection closed without an answer")):
        if needle in text:  # only to word the message; retrying is decided on the exception type
            return reason
    return f"{type(exc).__name__}: {text[:200]}"


class Transport:
    """Sends the requests of one catalog interaction with retries and the shared deadline (module docstring).

    ``url`` is the root of the service (catalog or token endpoint) named in errors; ``service`` names its kind.
    """

    def __init__(
        self,
        url: str,
        *,
        policy: RetryPolicy | None = None,
        deadline: float | Deadline | None = None,
        service: str = "catalog",
        session: requests.Session | None = None,
        rng: random.Random | None = None,
    ) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.url = url
        self.policy = policy or RetryPolicy()
        self.deadline = Deadline.of(deadline)
        self.service = service
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=0)  # retries are ours: urllib3 would not see the deadline
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self.rng = rng or random.Random()

    def for_service(self, url: str, service: str) -> Transport:
        """A transport to another service (e.g. a token endpoint) on the same session, policy and deadline."""
        return Transport(url, policy=self.policy, deadline=self.deadline, service=service, session=self.session,
                         rng=self.rng)

    def send(self, request: requests.Request) -> requests.Response:
        """Send ``request`` until a 2xx answer; raise :class:`CatalogError` (status, transient) otherwise."""
        import requests

        what = f"{request.method} {request.url}"
        start = time.monotonic()
        attempts = 0
        last_status: int | None = None
        last: str = ""
        while True:
            left = self.deadline.remaining()
            if left <= 0:
                raise self._deadline_error(what, attempts, last, last_status)
            timeout = min(self.policy.timeout, left)
            attempts += 1
            retry_after = None
            try:
                prepped = self.session.prepare_request(request)
                env = self.session.merge_environment_settings(prepped.url, {}, None, None, None)  # proxies, CA
                resp = self.session.send(prepped, timeout=(timeout, timeout), **env)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
                last, last_status = _reason(e), None
                log.debug("%s: %s (attempt %d)", what, last, attempts)
            else:
                if 200 <= resp.status_code < 300:
                    return resp
                last_status = resp.status_code
                last = f"HTTP {resp.status_code} {resp.reason or ''}".rstrip() + f" with {_excerpt(resp)}"
                if not is_transient_status(resp.status_code):
                    raise _status_error(
                        f"the {self.service} at {self.url} answered {what} with {last}", status=resp.status_code,
                        transient=False, url=self.url,
                    )
                retry_after = _retry_after(resp)
                log.debug("%s: %s (attempt %d)", what, last, attempts)
            if self.deadline.remaining() <= 0:
                raise self._deadline_error(what, attempts, last, last_status)
            if attempts > self.policy.retries:
                raise self._exhausted_error(what, attempts, last, last_status, time.monotonic() - start)
            wait = self.policy.delay(attempts, self.rng)
            if retry_after is not None and retry_after > wait:
                wait = retry_after
                if wait >= self.deadline.remaining():
                    raise self._deadline_error(
                        what, attempts, f"{last}, asking to retry after {retry_after:g} s", last_status
                    )
            if wait >= self.deadline.remaining():
                raise self._deadline_error(what, attempts, last, last_status)
            time.sleep(wait)

    def _deadline_error(self, what: str, attempts: int, last: str, status: int | None) -> CatalogDeadlineError:
        n = f"{self.deadline.seconds:g}"
        if status is None:
            head = f"the {self.service} at {self.url} did not answer within {n} s"
        else:
            head = f"the {self.service} at {self.url} did not answer successfully within {n} s (HTTP {status})"
        return CatalogDeadlineError(
            f"{head}: {what}, {attempts} attempt(s){f', last: {last}' if last else ''}. Check that it is up and "
            "reachable, or allow more time with --catalog-deadline (CubeConfig.catalog_deadline)",
            status=status, transient=False, url=self.url,
        )

    def _exhausted_error(self, what: str, attempts: int, last: str, status: int | None, took_s: float) -> CatalogError:
        took = f"{attempts} attempts in {took_s:.1f} s"
        if status is not None:
            return _status_error(
                f"the {self.service} at {self.url} answered {what} with {last} ({took}); it is overloaded or "
                "down: try again later", status=status, transient=True, url=self.url,
            )
        hint = ". Is the catalog server running?" if self.service == "catalog" else ""
        return CatalogError(f"could not reach the {self.service} at {self.url}: {what}: {last} ({took}){hint}",
                            transient=True, url=self.url)


def _status_error(message: str, *, status: int, transient: bool, url: str) -> CatalogError:
    """A :class:`CatalogError` that pystac-client also takes for its ``APIError`` (it looks up ``status_code``:
    a 404 from ``get_collection`` means "no such collection")."""
    err = _pystac_classes()["CatalogAPIError"](message, status=status, transient=transient, url=url)
    err.status_code = status
    return err


def _pystac_classes() -> dict[str, type]:
    """Define :class:`CatalogAPIError` and :class:`CatalogIO` (subclasses of pystac-client's) on first use, so
    importing crofuse does not import pystac-client."""
    if "CatalogIO" in globals():
        return globals()
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    class CatalogAPIError(CatalogError, APIError):
        """A :class:`CatalogError` from an HTTP answer; also pystac-client's ``APIError`` (with ``status_code``)."""

    class CatalogIO(StacApiIO):
        """pystac-client's ``StacApiIO`` whose requests are sent by a :class:`Transport`."""

        def __init__(self, transport: Transport) -> None:
            super().__init__(max_retries=None)
            self.transport = transport
            self.session = transport.session

        def request(
            self,
            href: str,
            method: str | None = None,
            headers: dict[str, str] | None = None,
            parameters: dict[str, Any] | None = None,
        ) -> str:
            from requests import Request

            method = (method or "GET").upper()
            if method in ("POST", "PUT", "PATCH"):
                request = Request(method=method, url=href, headers=headers, json=parameters)
            else:
                request = Request(method=method, url=href, headers=headers, params=deepcopy(parameters) or {})
            modified = self._req_modifier(request) if self._req_modifier else None
            resp = self.transport.send(modified or request)
            try:
                return resp.content.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CatalogError(f"{href} answered with bytes that are not UTF-8 text: {e}", transient=False,
                                   url=self.transport.url) from e

    for cls in (CatalogAPIError, CatalogIO):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__  # picklable by reference (Prefect states)
        globals()[cls.__name__] = cls
    return globals()


def __getattr__(name: str) -> Any:  # PEP 562: `stac_client.CatalogIO` builds the classes on first use
    if name in ("CatalogAPIError", "CatalogIO"):
        return _pystac_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def catalog_io(transport: Transport) -> pystac_client.stac_api_io.StacApiIO:
    """A pystac-client ``StacApiIO`` on ``transport``."""
    return _pystac_classes()["CatalogIO"](transport)


# ------------------------------------------------------------------------------------------------------- signing
class PlanetaryComputerSigner:
    """Planetary Computer SAS signing whose token requests go through the transport (so the deadline and the
    retries cover them), then ``planetary_computer.sign_inplace`` from its token cache.

    The planetary-computer package fetches tokens with its own session, no timeout and 10 retries (7.5 min
    offline); here each ``<sas_url>/<account>/<container>`` token is fetched first, put in the package's token
    cache, and signing then needs no network. Failures raise :class:`~crofuse.errors.SigningError` naming the
    token URL.
    """

    def __init__(self, transport: Transport) -> None:
        try:
            import planetary_computer
            from planetary_computer.sas import BLOB_STORAGE_DOMAIN, TOKEN_CACHE, SASToken
            from planetary_computer.settings import Settings
            from planetary_computer.utils import parse_blob_url
        except ImportError as e:
            raise ConfigError(
                "signing='planetary-computer' signs asset URLs with the planetary-computer package (1.x), which is "
                "not installed: pip install 'crofuse[planetary-computer]', or pass --signing none (signing='none') "
                "if the catalog's assets need no signing"
            ) from e
        self._sign = planetary_computer.sign_inplace
        self._domain, self._cache, self._token = BLOB_STORAGE_DOMAIN, TOKEN_CACHE, SASToken
        self._settings, self._parse = Settings.get(), parse_blob_url
        self.transport = transport

    def token_urls(self, obj: Any) -> list[str]:
        """The token URLs the asset hrefs of ``obj`` (an Item or Collection) need."""
        from urllib.parse import urlparse

        urls = []
        for href in _hrefs(obj):
            parsed = urlparse(href.rstrip("/"))
            if not parsed.netloc.endswith(self._domain) or parsed.netloc.startswith("ai4edatasetspublicassets."):
                continue
            account, container = self._parse(parsed)
            url = f"{self._settings.sas_url}/{account}/{container}"
            if url not in urls:
                urls.append(url)
        return urls

    def fetch_token(self, url: str) -> None:
        """Put a fresh token for ``url`` in the package's cache (no request when the cached one has > 60 s left)."""
        from requests import Request

        cached = self._cache.get(url)
        if cached is not None and cached.ttl() >= 60:
            return
        key = self._settings.subscription_key
        service = self.transport.for_service(url, "Planetary Computer token service")
        headers = {"Ocp-Apim-Subscription-Key": key} if key else None
        try:
            resp = service.send(Request("GET", url, headers=headers))
            self._cache[url] = self._token(**resp.json())
        except CatalogError as e:
            raise SigningError(
                f"signing asset URLs failed: {e}. The token URL is {url} (set PC_SDK_SAS_URL to use another); "
                "use signing='none' (--signing none) if the catalog's assets need no signing",
                status=e.status, transient=e.transient, url=url,
            ) from e
        except (ValueError, TypeError) as e:  # not JSON, or not a token
            raise SigningError(f"signing asset URLs failed: {url} did not answer with a SAS token: {e}",
                               transient=False, url=url) from e

    def __call__(self, obj: Any) -> None:
        for url in self.token_urls(obj):
            self.fetch_token(url)
        try:
            self._sign(obj)
        except Exception as e:  # the package's own failures (bad blob URL, a token it fetched itself)
            raise SigningError(f"signing the asset URLs of {getattr(obj, 'id', obj)!r} failed: {e}",
                               transient=False, url=self._settings.sas_url) from e


def _hrefs(obj: Any) -> list[str]:
    """Asset hrefs of an Item, Collection, ItemCollection or their dicts (what pystac-client's modifier gets)."""
    if isinstance(obj, dict):
        objs = obj.get("features") or [obj]
        return [a["href"] for o in objs for a in (o.get("assets") or {}).values() if isinstance(a, dict) and "href" in a]
    objs = getattr(obj, "items", None)
    objs = list(objs) if isinstance(objs, list) else [obj]
    return [a.href for o in objs for a in getattr(o, "assets", {}).values()]


SIGNERS = ("none", "planetary-computer")


def signer(signing: str, transport: Transport) -> Callable[[Any], None] | None:
    """The pystac-client ``modifier`` that signs items for ``signing`` (``None`` for ``"none"``)."""
    if signing == "none":
        return None
    if signing == "planetary-computer":
        return PlanetaryComputerSigner(transport)
    raise ConfigError(f"signing={signing!r}: use one of {SIGNERS}")


# ---------------------------------------------------------------------------------------------------- clients
def open_client(
    url: str,
    *,
    signing: str = "none",
    timeout: float = 30.0,
    retries: int = 4,
    deadline: float | Deadline | None = None,
) -> pystac_client.Client:
    """Open a STAC API root on a fresh :class:`Transport`; the deadline starts now (or is the one given) and covers
    everything done with the returned client, so open one per interaction."""
    import pystac
    from pystac_client import Client
    from pystac_client.errors import ClientTypeError

    transport = Transport(url, policy=RetryPolicy(retries=retries, timeout=timeout), deadline=deadline)
    modifier = signer(signing, transport)  # a missing package is a ConfigError: it says what to install
    try:
        return Client.open(url, stac_io=catalog_io(transport), modifier=modifier)
    except CatalogError as e:
        unreachable = e.status is None and not isinstance(e, CatalogDeadlineError)
        hint = " (for the sample catalog, start it with `crofuse sample-catalog serve`)" if unreachable else ""
        raise in_context(e, f"cannot open the STAC catalog at {url}{hint}") from e
    except (pystac.STACError, ClientTypeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CatalogError(f"{url} did not answer with a STAC catalog: {e}", transient=False, url=url) from e


def in_context(e: CatalogError, what: str) -> CatalogError:
    """``e`` again (same class, status and flags) with ``what`` in front of its message."""
    err = type(e)(f"{what}: {e}", status=e.status, transient=e.transient, url=e.url)
    if hasattr(e, "status_code"):
        err.status_code = e.status_code  # type: ignore[attr-defined]
    return err


def run_search(client: pystac_client.Client, *, what: str, max_items: int | None, **search: Any) -> list[pystac.Item]:
    """``client.search(**search)``, every page, as a list; more than ``max_items`` items is a :class:`CatalogError`."""
    import pystac
    from pystac_client.warnings import DoesNotConformTo

    url = client.get_self_href() or ""
    try:
        items = list(client.search(max_items=None if max_items is None else max_items + 1, **search).items())
    except SigningError:
        raise  # says what failed itself: not the search
    except CatalogError as e:
        hint = " (no such collection? check the profile or the collection names)" if e.status == 404 else ""
        raise in_context(e, f"{what} failed{hint}") from e
    except (DoesNotConformTo, NotImplementedError) as e:
        raise CatalogError(
            f"{what} failed: the catalog is not a STAC API with item search ({e}). Serve static catalogs with "
            "`crofuse sample-catalog serve` (rustac serve)", transient=False, url=url,
        ) from e
    except (pystac.STACError, json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
        raise CatalogError(f"{what} returned items pystac cannot read: {e}", transient=False, url=url) from e
    if max_items is not None and len(items) > max_items:
        raise CatalogError(
            f"{what} returned more than max_items={max_items} items; the area or time range is probably too large "
            "(check the bbox axis order) or raise max_items", transient=False, url=url,
        )
    return items


def search_items(
    url: str,
    *,
    collections: Sequence[str],
    intersects: dict[str, Any] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    ids: Sequence[str] | None = None,
    filter: dict[str, Any] | None = None,
    limit: int = PAGE_SIZE,
    max_items: int | None = 10_000,
    signing: str = "none",
    timeout: float = 30.0,
    retries: int = 4,
    deadline: float | Deadline | None = None,
) -> list[pystac.Item]:
    """Every item of ``collections`` matching the query (all pages), opened, searched and signed on one transport
    within one deadline. Errors are :class:`~crofuse.errors.CatalogError` naming the URL and the query."""
    client = open_client(url, signing=signing, timeout=timeout, retries=retries, deadline=deadline)
    query = {"collections": list(collections), "intersects": intersects, "bbox": list(bbox) if bbox else None,
             "datetime": datetime, "ids": list(ids) if ids else None, "filter": filter, "limit": limit}
    query = {k: v for k, v in query.items() if v is not None}
    said = " ".join(f"{k}={v!r}" for k, v in query.items() if k not in ("limit", "intersects"))
    return run_search(client, what=f"STAC search at {url} ({said})", max_items=max_items, **query)


def list_collections(
    url: str,
    *,
    timeout: float = 30.0,
    retries: int = 4,
    deadline: float | Deadline | None = None,
) -> list[pystac.Collection]:
    """The collections of the STAC API at ``url`` (all pages), on one transport within one deadline."""
    import pystac

    client = open_client(url, timeout=timeout, retries=retries, deadline=deadline)
    try:
        return list(client.get_collections())
    except CatalogError as e:
        raise in_context(e, f"could not list the collections of {url}") from e
    except (pystac.STACError, json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
        raise CatalogError(f"the collections of {url} cannot be read: {e}", transient=False, url=url) from e


__all__ = [
    "DEFAULT_DEADLINE",
    "RETRY_STATUS",
    "SIGNERS",
    "Deadline",
    "PlanetaryComputerSigner",
    "RetryPolicy",
    "Transport",
    "catalog_io",
    "in_context",
    "is_transient_status",
    "list_collections",
    "open_client",
    "run_search",
    "search_items",
    "signer",
]

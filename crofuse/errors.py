"""One exception hierarchy for everything crofuse refuses to do.

Every message says what was wrong and what to do next. Catch :class:`CrofuseError` to catch them all.
"""


class CrofuseError(Exception):
    """Base class of all crofuse errors."""


class ConfigError(CrofuseError, ValueError):
    """A configuration value is not allowed."""


class DataError(CrofuseError):
    """Input data on disk is missing, corrupt, or has the wrong shape, bands or values."""


class PatchDatasetError(DataError):
    """A WHU-IS style patch dataset is malformed (missing partner file, wrong band count, bad labels...)."""


class LabelError(DataError):
    """Labels cannot be used: a label source that does not cover the AOI, unknown class codes, a missing year,
    a vector file without CRS or with invalid geometries."""


class TrainingSetError(DataError):
    """A training set cannot be built as asked (an empty split, other settings in the same folder...)."""


class CheckpointError(CrofuseError):
    """A checkpoint cannot be read."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's architecture or band order does not match what was asked for."""


class CatalogError(CrofuseError):
    """A STAC catalog could not be searched or returned unusable items.

    What went wrong on the wire is kept as data, so retry policies never read the message: ``status`` is the HTTP
    status of the last answer (``None`` when there was none: connection refused/reset, timeout, or not an HTTP
    failure); ``transient`` says whether a later retry can cure it (429, 5xx, connection errors: ``True``; 4xx,
    unreadable answers: ``False``; ``None``: not known, look at the cause); ``url`` is the catalog (or token
    service) root the failure is about.
    """

    def __init__(
        self, message: str, *, status: int | None = None, transient: bool | None = None, url: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.url = url


class CatalogDeadlineError(CatalogError):
    """A catalog interaction (every request, retry, page and signing of one search) ran past its deadline.

    Not ``transient``: the deadline already bounded every retry, and retrying again would multiply it.
    """


class SigningError(CatalogError):
    """Asset URLs could not be signed (e.g. the Planetary Computer token service failed or did not answer)."""


class EmptySearchError(CatalogError):
    """A STAC search returned no items."""


class AOIError(CrofuseError, ValueError):
    """An area of interest is not a valid polygon, or a bbox is malformed."""


class CubeError(CrofuseError):
    """An input cube could not be built or read."""


class MissingModalityError(CubeError):
    """A season has optical but no SAR observations, or the reverse."""


class InsufficientDataError(CubeError):
    """Too few valid (clear) pixels to map, e.g. an all-cloud season."""


class AssetReadError(CubeError, DataError):
    """A raster asset (COG) is corrupt or unreachable."""


class InferenceError(CrofuseError):
    """Tiled inference failed."""


class ClusterError(CrofuseError):
    """A dask cluster could not be started or reached."""


class StorageError(CrofuseError):
    """A path or URL of the output root, the checkpoint or an input cannot be read or written (object storage
    unreachable, a bad URL, a missing bucket, a read-only output, a full disk)."""


class OutputWriteError(StorageError):
    """Writing an output failed for a reason on the output's side (no space left, read-only, permission)."""


class LeaseHeldError(CrofuseError):
    """Another run holds the lease of a city-year (or of the statistics tables)."""


class LeaseLostError(CrofuseError):
    """This run's lease was taken over by another run (its heartbeat stopped for longer than the timeout)."""


class ServiceError(CrofuseError):
    """A local service (STAC API, Prefect server, worker) failed to start or stop."""

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
    """A STAC catalog could not be searched or returned unusable items."""


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


class ServiceError(CrofuseError):
    """A local service (STAC API, Prefect server, worker) failed to start or stop."""

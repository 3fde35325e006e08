"""Products as STAC: each finished city-year is an item of one collection at the output root (docs/products.md).

* :mod:`~crofuse.products.assets`: the asset keys, their files, roles, media types and encodings (the one place
  that names the files);
* :mod:`~crofuse.products.items`: the item of a finished city-year folder;
* :mod:`~crofuse.products.collection`: the collection, and :func:`publish` (idempotent, under the output lock);
* :mod:`~crofuse.products.validate`: offline validation (core schemas shipped with pystac, extension fields
  through pystac's extension classes);
* :mod:`~crofuse.products.load`: a city's series back from a STAC API as one ``(time, y, x)`` cube (odc-stac).

``crofuse products build OUT`` rebuilds the collection of a folder; ``crofuse products serve OUT`` serves it as a
STAC API (``rustac serve``, started by ``infra``).
"""

from crofuse.products.assets import (
    COLLECTION_ASSETS,
    COLLECTION_NAME,
    ITEM_ASSETS,
    ITEM_NAME,
    AssetSpec,
)
from crofuse.products.collection import (
    DEFAULT_COLLECTION_ID,
    ProductsConfig,
    PublishReport,
    build_collection,
    city_year_folders,
    export_collection,
    publish,
)
from crofuse.products.items import build_item, is_finished, item_id, write_item
from crofuse.products.load import load_series, search_series
from crofuse.products.validate import check_extensions, validate, validate_core

__all__ = [
    "COLLECTION_ASSETS",
    "COLLECTION_NAME",
    "DEFAULT_COLLECTION_ID",
    "ITEM_ASSETS",
    "ITEM_NAME",
    "AssetSpec",
    "ProductsConfig",
    "PublishReport",
    "build_collection",
    "build_item",
    "check_extensions",
    "city_year_folders",
    "export_collection",
    "is_finished",
    "item_id",
    "load_series",
    "publish",
    "search_series",
    "validate",
    "validate_core",
    "write_item",
]

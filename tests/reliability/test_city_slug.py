"""Fault report 4: `crofuse cube` cut city folder names to 80 characters, so two long names sharing a prefix wrote
into one folder and overwrote each other's cube. A slug is now unique; names that fit keep their old slug."""

from __future__ import annotations

import re

import pytest

from crofuse.cube import city_slug
from crofuse.cube.aoi import SLUG_MAX

PREFIX = "Greater Metropolitan Area of the Municipality of San Francisco de Asis de la Santisima Trinidad"


def test_long_names_with_a_common_prefix_get_different_folders() -> None:
    north, south = city_slug(f"{PREFIX} North"), city_slug(f"{PREFIX} South")
    assert len(PREFIX) > SLUG_MAX, "the common prefix alone is longer than a slug"
    assert north != south
    for slug in (north, south):
        assert len(slug) <= SLUG_MAX
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug), slug  # still file-system safe
        assert slug.startswith("greater-metropolitan-area-of-the-municipality")
    assert city_slug(f"{PREFIX} North") == north, "deterministic: a rerun finds its folder"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("wuhan", "wuhan"),
        ("São Paulo", "sao-paulo"),
        ("../x", "x"),
        ("a" * SLUG_MAX, "a" * SLUG_MAX),  # exactly at the limit: unchanged
    ],
)
def test_names_that_fit_keep_their_slug(name: str, slug: str) -> None:
    assert city_slug(name) == slug


def test_spellings_of_one_long_name_share_a_folder() -> None:
    """Case, accents and punctuation never made two folders; a long name keeps that (the hash is of the slug)."""
    assert city_slug(f"{PREFIX} Norte") == city_slug(f"{PREFIX.upper()}, NORTE!")

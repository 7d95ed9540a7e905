"""Target identifiers (bulkmig.config.names): folding, collisions, DMS rules, schema mapping, PG limits."""

from __future__ import annotations

import pytest

from bulkmig.config import names
from bulkmig.config.mappings import Mappings
from bulkmig.core.errors import ConfigError


def rules(*transformations: dict[str, object]) -> Mappings:
    doc = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "all",
                "object-locator": {"schema-name": "%", "table-name": "%"},
                "rule-action": "include",
            },
            *[{"rule-type": "transformation", "rule-id": str(10 + i), **t} for i, t in enumerate(transformations)],
        ]
    }
    return Mappings.from_doc(doc)


def test_fold_all_backs_off_on_collisions_only() -> None:
    folded, clashes = names.fold_all(["Album", "ALBUM", "Artist", "track"], "lower")
    assert folded == {"Album": "Album", "ALBUM": "ALBUM", "Artist": "artist", "track": "track"}
    assert clashes == [["Album", "ALBUM"]]
    assert names.fold_all(["Album", "ALBUM"], "preserve") == ({"Album": "Album", "ALBUM": "ALBUM"}, [])


def test_mysql_database_becomes_folded_schema_and_tables_fold() -> None:
    n = names.decide(
        "mysql",
        "Chinook",
        {"Album": ["AlbumId", "Title"], "Artist": ["ArtistId", "Name"]},
        ["TopAlbums"],
        "lower",
        Mappings.default(),
    )
    assert n.schema == "chinook"
    assert (n.table("Album").schema, n.table("Album").name) == ("chinook", "album")
    assert n.table("Album").columns == {"AlbumId": "albumid", "Title": "title"}
    assert n.views == {"TopAlbums": "topalbums"}
    assert n.table_clashes == []


def test_preserve_keeps_every_spelling() -> None:
    n = names.decide("mysql", "Chinook", {"Album": ["AlbumId"]}, [], "preserve", Mappings.default())
    assert (n.schema, n.table("Album").name, n.column("Album", "AlbumId")) == ("Chinook", "Album", "AlbumId")


def test_table_and_view_collision_keeps_original_names() -> None:
    n = names.decide(
        "mysql", "db", {"Orders": ["id"], "orders": ["id"], "Items": ["id"]}, ["ORDERS"], "lower", Mappings.default()
    )
    assert n.table("Orders").name == "Orders" and n.table("orders").name == "orders"
    assert n.views["ORDERS"] == "ORDERS" and n.table("Items").name == "items"
    assert n.table_clashes == [["Orders", "orders", "ORDERS"]]


def test_column_collision_keeps_original_names() -> None:
    n = names.decide("mysql", "db", {"t": ["Id", "ID", "Name"]}, [], "lower", Mappings.default())
    assert n.table("t").columns == {"Id": "Id", "ID": "ID", "Name": "name"}
    assert n.table("t").folded_clashes == [["Id", "ID"]]


def test_sqlite_main_becomes_public() -> None:
    n = names.decide("sqlite", "main", {"Album": ["AlbumId"]}, [], "lower", Mappings.default())
    assert (n.schema, n.table("Album").name) == ("public", "album")
    n = names.decide("sqlite", "main", {"Album": ["AlbumId"]}, [], "preserve", Mappings.default())
    assert (n.schema, n.table("Album").name) == ("public", "Album")


def test_dms_rules_apply_on_top_of_folding() -> None:
    m = rules(
        {
            "rule-name": "schema",
            "rule-action": "rename",
            "rule-target": "schema",
            "object-locator": {"schema-name": "Chinook"},
            "value": "music",
        },
        {
            "rule-name": "artist",
            "rule-action": "rename",
            "rule-target": "table",
            "object-locator": {"schema-name": "Chinook", "table-name": "Artist"},
            "value": "Performer",
        },
        {
            "rule-name": "prefix",
            "rule-action": "add-prefix",
            "rule-target": "column",
            "object-locator": {"schema-name": "Chinook", "table-name": "Album", "column-name": "Title"},
            "value": "album_",
        },
        {
            "rule-name": "drop",
            "rule-action": "remove-column",
            "rule-target": "column",
            "object-locator": {"schema-name": "Chinook", "table-name": "Album", "column-name": "Secret"},
        },
    )
    n = names.decide(
        "mysql", "Chinook", {"Album": ["AlbumId", "Title", "Secret"], "Artist": ["ArtistId"]}, [], "lower", m
    )
    assert n.schema == "music"
    assert n.table("Artist").name == "Performer"  # a rename is the user's spelling: not folded
    assert n.table("Album").columns == {"AlbumId": "albumid", "Title": "album_title"}
    assert n.table("Album").removed == ["Secret"]
    assert n.table("Album").renamed_by_rules == {"Title": "album_title"}


def test_convert_lowercase_rule_with_preserve() -> None:
    m = rules(
        {
            "rule-name": "lower",
            "rule-action": "convert-lowercase",
            "rule-target": "table",
            "object-locator": {"schema-name": "%", "table-name": "%"},
        }
    )
    n = names.decide("mysql", "Shop", {"Orders": ["Id"]}, [], "preserve", m)
    assert (n.schema, n.table("Orders").name, n.column("Orders", "Id")) == ("Shop", "orders", "Id")


def test_rules_that_merge_two_tables_are_refused() -> None:
    m = rules(
        {
            "rule-name": "merge",
            "rule-action": "rename",
            "rule-target": "table",
            "object-locator": {"schema-name": "db", "table-name": "a"},
            "value": "b",
        }
    )
    with pytest.raises(ConfigError, match="land on one target name: 'a', 'b' -> 'b'"):
        names.decide("mysql", "db", {"a": ["id"], "b": ["id"]}, [], "lower", m)


def test_names_longer_than_63_bytes_are_refused() -> None:
    long = "x" * 64
    with pytest.raises(ConfigError, match="longer than 63 bytes"):
        names.decide("mysql", "db", {long: ["id"]}, [], "lower", Mappings.default())


def test_namespace_claims_unique_names_within_63_bytes() -> None:
    ns = names.Namespace(["film"])
    assert ns.claim("film") == "film_2"
    assert ns.claim("film") == "film_3"
    long = "é" * 40  # 80 bytes
    first = ns.claim(long)
    assert len(first.encode()) <= 63 and first == "é" * 31
    second = ns.claim(long)
    assert second != first and len(second.encode()) <= 63 and second.endswith("_2")

"""Wire codecs: Confluent-framed Avro and the VenueEvent <-> fold-dict mapping."""

from streams.codec.avro import Codec, load_named_schemas
from streams.codec.venue import (
    dec_str,
    fold_dict_to_venue_record,
    mark_to_record,
    parse_ts,
    plain,
    venue_record_to_fold_dict,
)
from streams.ledger.events import iso_z as iso  # one ISO-8601 format for the whole project

__all__ = [
    "Codec",
    "dec_str",
    "fold_dict_to_venue_record",
    "iso",
    "load_named_schemas",
    "mark_to_record",
    "parse_ts",
    "plain",
    "venue_record_to_fold_dict",
]

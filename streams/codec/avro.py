"""Avro schemas and the Confluent wire format (magic byte 0, 4-byte schema id, Avro body).

Owns: loading the packaged ``avro/*.avsc`` (``streams.resources``) once at start,
resolving named types, schema ids (the catalogue's ``wire_id`` and ``avro/ids.json``,
or a Schema Registry), encoding and decoding framed records. Must not touch: the
meaning of records (see ``streams.codec.venue`` for VenueEvent <-> fold dicts) or
any Kafka client.

Parsing happens once per process: parsing per message is a known way to lose
most of a pipeline's throughput.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import UnknownType, expand_schema, parse_schema

from streams.catalogue import CATALOGUE, Entry
from streams.codec.fastread import Unsupported, compile_reader
from streams.codec.fastwrite import compile_writer
from streams.exceptions import ConfigError, DecodeError, UnknownSchemaId
from streams.ledger.grammar import canonical
from streams.resources import schema_dir

#: The one place the schema directory is found: package data, wherever installed.
SCHEMA_DIR = schema_dir()
NAMESPACE = "twinledger.v1"
MAGIC = 0
_HEADER = struct.Struct(">bI")


def load_named_schemas(directory: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    """Parse every ``.avsc`` of ``directory`` with named types resolved across files.

    Returns full name -> fully expanded schema (no references left), so each
    schema stands alone for a registry or a reader.
    """
    raw = {}
    for path in sorted(directory.glob("*.avsc")):
        schema = json.loads(path.read_text())
        raw[f"{schema.get('namespace', NAMESPACE)}.{schema['name']}"] = schema
    named: dict[str, Any] = {}
    pending = dict(raw)
    while pending:
        progressed = False
        for name, schema in list(pending.items()):
            try:
                parse_schema(schema, named_schemas=named)
            except UnknownType:
                continue
            del pending[name]
            progressed = True
        if not progressed:
            raise ConfigError(f"unresolvable Avro schemas in {directory}: {sorted(pending)}")
    return {name: _expand(raw[name], named) for name in raw}


def _expand(schema: dict[str, Any], named: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_schema(schema, named_schemas=dict(named))
    expanded = expand_schema(parsed)
    assert isinstance(expanded, dict)
    return expanded


class Codec:
    """Encode and decode framed Avro records by record name (``VenueEvent``, ``Mark``...)."""

    def __init__(self, writer_ids: Mapping[str, int], schemas_by_id: Mapping[int, dict[str, Any]],
                 current: Mapping[str, dict[str, Any]], registry: Any = None) -> None:
        self._registry = registry
        self._writer_ids = dict(writer_ids)
        # Compiled writers where the schema allows (byte-identical to fastavro's).
        self._fast = {name: compile_writer(s) for name, s in current.items()}
        self._current = {name: parse_schema(s) for name, s in current.items()}
        self._by_id = {i: parse_schema(s) for i, s in schemas_by_id.items()}
        self._name_by_id = {i: s["name"].rsplit(".", 1)[-1] for i, s in schemas_by_id.items()}
        # Compiled readers (same output as fastavro's) per writer schema id, where allowed;
        # for the others (an older version, read into the current one by fastavro), a
        # compiled reader of the writer schema alone that bounds the work of a body first.
        self._readers: dict[int, Any] = {}
        self._bounded: dict[int, Any] = {}
        for sid in self._by_id:
            self._compile_reader(sid)
        self._headers = {name: _HEADER.pack(MAGIC, i) for name, i in self._writer_ids.items()}

    @classmethod
    def load(cls, registry_url: str = "", directory: Path = SCHEMA_DIR,
             catalogue: tuple[Entry, ...] = CATALOGUE) -> Codec:
        """The codec of this process: checked-in ids, or ids from ``registry_url``.

        The checked-in ids are each catalogue entry's ``wire_id`` (its record's
        current schema) and ``ids.json`` (schemas that are not a current output:
        ``Mark``, and retired versions under ``history/``); see :func:`checked_in_ids`.
        """
        named = load_named_schemas(directory)
        current = {full.rsplit(".", 1)[1]: s for full, s in named.items()}
        by_id: dict[int, dict[str, Any]] = {}
        writer_ids: dict[str, int] = {}
        for sid, rel in checked_in_ids(directory, catalogue).items():
            path = directory / rel
            if path.parent == directory:
                schema = current[path.stem]
                writer_ids[path.stem] = sid
            else:  # history/<Name>.v<N>.avsc, self-contained
                schema = json.loads(path.read_text())
            by_id[sid] = schema
        registry = None
        if registry_url:
            registry, writer_ids, by_id = _register(registry_url, current, by_id)
        top = {name: current[name] for name in writer_ids}
        return cls(writer_ids, by_id, top, registry)

    def schema_id(self, name: str) -> int:
        return self._writer_ids[name]

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Frame ``record`` as the current version of ``name``."""
        fast = self._fast.get(name)
        if fast is not None:
            return self._headers[name] + fast(record)
        return self.encode_with_fastavro(name, record)

    def encode_with_fastavro(self, name: str, record: Mapping[str, Any]) -> bytes:
        """The reference encoding (and the path for schemas the compiled writer lacks)."""
        buf = io.BytesIO()
        buf.write(self._headers[name])
        fastavro.schemaless_writer(buf, self._current[name], record)
        return buf.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Return (record name, record) read with the current schema as reader schema.

        Raises :class:`DecodeError` (bad framing, bad body, trailing bytes) or
        :class:`UnknownSchemaId`; both keep the bytes. Bodies of a writer schema
        equal to the current one are read by the compiled reader
        (``streams.codec.fastread``), any other by fastavro, with the same output.
        """
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 5:
            raise DecodeError("record shorter than the 5-byte Confluent header", raw=_b(data))
        magic, sid = _HEADER.unpack_from(data, 0)
        if magic != MAGIC:
            raise DecodeError(f"bad magic byte {magic} (expected 0)", raw=bytes(data))
        read = self._readers.get(sid)
        if read is None and sid not in self._by_id and self._registry is not None:
            self._fetch(sid)  # compiles its readers, so that this body is bounded too
            read = self._readers.get(sid)
        if read is None:
            bounded = self._bounded.get(sid)
            if bounded is not None:
                # fastavro has no bound on a decimal's width (a megabyte takes minutes to
                # read): the body is read first with its writer schema alone, which refuses it.
                try:
                    bounded(data, 5)
                except Exception as exc:  # noqa: BLE001 - reported as the decode error
                    raise _undecodable(self._name_by_id[sid], exc, data) from exc
            return self.decode_with_fastavro(data)
        name = self._name_by_id[sid]
        try:
            record, end = read(data, 5)
        except Exception as exc:  # IndexError, ValueError, UnicodeDecodeError... on garbage
            raise _undecodable(name, exc, data) from exc
        if end != len(data):
            raise DecodeError(f"{len(data) - end} trailing bytes after {name} body",
                              raw=bytes(data))
        return name, self._finish(name, record)

    def decode_with_fastavro(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """The reference decoding (and the path for schemas the compiled reader lacks)."""
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 5:
            raise DecodeError("record shorter than the 5-byte Confluent header", raw=_b(data))
        magic, sid = _HEADER.unpack_from(data, 0)
        if magic != MAGIC:
            raise DecodeError(f"bad magic byte {magic} (expected 0)", raw=bytes(data))
        writer = self._by_id.get(sid)
        if writer is None and self._registry is not None:
            writer = self._fetch(sid)
        if writer is None:
            raise UnknownSchemaId(f"unknown schema id {sid}", raw=bytes(data))
        name = self._name_by_id[sid]
        reader = self._current.get(name)
        buf = io.BytesIO(data)
        buf.seek(5)
        try:
            record = fastavro.schemaless_reader(
                buf, writer, None if reader is writer or reader is None else reader,
                return_record_name=True, return_record_name_override=True,
            )
        except Exception as exc:  # fastavro raises many types on garbage input
            raise _undecodable(name, exc, data) from exc
        if buf.tell() != len(data):
            raise DecodeError(f"{len(data) - buf.tell()} trailing bytes after {name} body",
                              raw=bytes(data))
        assert isinstance(record, dict)
        return name, self._finish(name, record)

    @staticmethod
    def _finish(name: str, record: dict[str, Any]) -> dict[str, Any]:
        if name == "Mark" and isinstance(record.get("price"), Decimal):
            # The wire's scale (0.190000000000000000) is not part of the price: the
            # worker's marks must read as a file's do, or their products print apart.
            record["price"] = canonical(record["price"])
        return record

    def _compile_reader(self, sid: int) -> None:
        """Compile the reader of writer schema ``sid``: the reader, when no schema resolution
        is needed (writer == current reader, as fastavro decides it); else fastavro stays
        the reader and the compiled one only bounds the body first (``_bounded``)."""
        writer = self._by_id[sid]
        reader = self._current.get(self._name_by_id[sid])
        try:
            compiled = compile_reader(writer, record_names=True)
        except Unsupported:
            return
        if reader is not None and reader != writer:
            self._bounded[sid] = compiled
        else:
            self._readers[sid] = compiled

    def _fetch(self, sid: int) -> Any:
        """A writer schema the registry knows and this process has not seen (another version)."""
        try:
            schema = json.loads(self._registry.get_schema(sid).schema_str)
        except Exception:  # the registry answers "not found" in several ways
            return None
        self._by_id[sid] = parse_schema(schema)
        self._name_by_id[sid] = schema["name"].rsplit(".", 1)[-1]
        self._compile_reader(sid)
        return self._by_id[sid]


def checked_in_ids(directory: Path = SCHEMA_DIR,
                   catalogue: tuple[Entry, ...] = CATALOGUE) -> dict[int, str]:
    """Wire id -> schema file (relative to ``directory``) when no registry is configured.

    The catalogue's ids (``<record>.avsc``) and ``ids.json``'s, in id order. An
    id given twice, or a schema file given two ids, is refused: records on the
    topics carry their id forever, so one id must always mean one schema.
    """
    listed = json.loads((directory / "ids.json").read_text())["ids"]
    pairs = [(int(sid), str(rel), "ids.json") for sid, rel in listed.items()]
    pairs += [(e.wire_id, f"{e.record}.avsc", f"catalogue entry {e.record}") for e in catalogue]
    out: dict[int, str] = {}
    where: dict[int, str] = {}
    named: dict[str, str] = {}
    for sid, rel, source in pairs:
        if sid in out:
            raise ConfigError(f"wire id {sid} is given twice ({where[sid]}: {out[sid]}; "
                              f"{source}: {rel}); ids are never reused")
        if rel in named:
            raise ConfigError(f"{rel} has two wire ids ({named[rel]} and {source}: {sid})")
        if not (directory / rel).is_file():
            raise ConfigError(f"wire id {sid} ({source}) names {rel}, not a schema file")
        out[sid], where[sid], named[rel] = rel, source, f"{source}: {sid}"
    return dict(sorted(out.items()))


def _undecodable(name: str, exc: Exception, data: bytes | bytearray | memoryview
                 ) -> DecodeError:
    """The error of a body a reader refused, naming the record and what the reader raised."""
    return DecodeError(f"undecodable {name} body: {type(exc).__name__}: {exc}", raw=bytes(data))


def _b(data: object) -> bytes | None:
    return bytes(data) if isinstance(data, bytes | bytearray | memoryview) else None


def _register(url: str, current: Mapping[str, dict[str, Any]], by_id: dict[int, dict[str, Any]]
              ) -> tuple[Any, dict[str, int], dict[int, dict[str, Any]]]:
    """Register the current top-level schemas (record-name subjects) and use the registry's ids."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    # new_client gives the in-memory registry for "mock://" URLs (tests, dry runs).
    client = SchemaRegistryClient.new_client({"url": url})
    ids: dict[str, int] = {}
    # Only the registry's ids count: the checked-in map means nothing to it.
    out: dict[int, dict[str, Any]] = {}
    tops = {s["name"].rsplit(".", 1)[-1] for s in by_id.values()}
    for name in tops:
        schema = current[name]
        sid = client.register_schema(f"{NAMESPACE}.{name}", Schema(json.dumps(schema), "AVRO"))
        ids[name] = sid
        out[sid] = schema
    return client, ids, out

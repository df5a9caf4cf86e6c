# Types of the C writer built from _avrowrite.c (see its header and streams/codec/fastwrite.py).
from typing import Any

SOURCE_SHA256: str
MAX_DEPTH: int

def write(plan: tuple[Any, ...], out: bytearray, value: Any, /) -> None: ...
def encode(plan: tuple[Any, ...], value: Any, /) -> bytes: ...

# Types of the C reader built from _avroread.c (see its header and streams/codec/fastread.py).
from typing import Any

SOURCE_SHA256: str
MAX_DEPTH: int

def read(plan: tuple[Any, ...], data: bytes, pos: int, /) -> tuple[Any, int]: ...
def configure(malformed: type[Exception], /) -> None: ...

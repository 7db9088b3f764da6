"""What to tell a user who tries to save a live resource instead of data.

Generators, locks, threads, open files, sockets, processes and modules belong to the running
process: no file can hold them. Saving one is almost always an accident (an attribute the
model kept from training), so the message names the kind of thing and the usual way out.
"""

from __future__ import annotations

import functools
import io
import types
from typing import Any

_DROP = (
    "leave it out of what you save (save the model or the data it needs, or give the class a "
    "__getstate__ that drops it)"
)


@functools.cache  # checked for every object saved: built once
def _kinds() -> list[tuple[tuple[type, ...], str]]:
    import _thread
    import threading

    lock_types = tuple({type(threading.Lock()), type(threading.RLock()), _thread.LockType})
    return [
        (
            (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType),
            "a generator or coroutine is running code, not data; save what it produces "
            "(for example list(gen)) instead",
        ),
        (
            (*lock_types, threading.Condition, threading.Event, threading.Semaphore),
            f"a lock or other thread synchronization object belongs to this process; {_DROP}",
        ),
        ((threading.Thread,), f"a thread belongs to this process; {_DROP}"),
        (
            (io.BytesIO, io.StringIO),
            "an in-memory stream cannot be saved; save its contents (stream.getvalue())",
        ),
        (
            (io.IOBase,),
            "an open file cannot be saved; save its path or its contents (f.read()) instead",
        ),
        ((types.ModuleType,), f"a module is code, not data; {_DROP}"),
        (
            (types.FrameType, types.TracebackType, types.CodeType),
            f"frames, tracebacks and code objects are interpreter state; {_DROP}",
        ),
    ]


_OTHER_RESOURCES = {
    "socket": "a network socket",
    "subprocess:Popen": "a child process",
    "multiprocessing.pool": "a process pool",
    "sqlite3": "a database connection",
    "mmap": "a memory map",
    "weakref": "a weak reference",
    "selectors": "an I/O selector",
    "queue": "a queue shared between threads",
    "concurrent.futures": "an executor or future",
    "asyncio": "an event loop object",
}


def advice(obj: Any) -> str | None:
    """A sentence saying why ``obj`` cannot be saved and what to do, or None when it is not
    a known kind of live resource."""
    for kinds, message in _kinds():
        if isinstance(obj, kinds):
            return message
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    for prefix, what in _OTHER_RESOURCES.items():
        name, _, qualname = prefix.partition(":")
        if (module == name or module.startswith(name + ".") or module == "_" + name) and (
            not qualname or cls.__qualname__ == qualname
        ):
            return f"{what} belongs to this process; {_DROP}"
    return None

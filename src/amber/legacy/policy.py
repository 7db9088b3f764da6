"""Names amber never constructs from a foreign file, whatever the caller trusts."""

from __future__ import annotations

# Modules whose classes and functions amber never constructs, whatever the user trusts:
# they run code, start processes, open files or sockets, import modules or read pickles.
NEVER_MODULES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "builtins",
        "importlib",
        "runpy",
        "pty",
        "pickle",
        "_pickle",
        "marshal",
        "types",
        "ctypes",
        "shutil",
        "socket",
        "pip",
        "ensurepip",
        "_interpreters",
        "_xxsubinterpreters",
        "asyncio",
        "cProfile",
        "profile",
        "pdb",
        "bdb",
        "codecs",
        "_codecs",
        "logging",
        "pydoc",
        "pkgutil",
        "operator",
        "webbrowser",
        "code",
        "codeop",
        "io",
        "_io",
        "tempfile",
        "multiprocessing",
        "threading",
        "_thread",
        "signal",
        "shelve",
        "dill",
        "cloudpickle",
        "joblib",
        "zipimport",
        "timeit",
        "trace",
        "http",
        "urllib",
        "ftplib",
        "smtplib",
        "telnetlib",
        "xmlrpc",
        "sqlite3",
        "glob",
        "pathlib",
        "venv",
        "distutils",
        "setuptools",
        "site",
        "inspect",
        "functools",
        "copyreg",
        "gc",
        "weakref",
        "idlelib",
        "lib2to3",
        "linecache",
        "bz2",
        "gzip",
        "lzma",
        "zipfile",
        "tarfile",
    }
)
# ... and names inside otherwise trusted packages that load files or run code.
NEVER_NAMES = frozenset(
    {
        "torch.load",
        "torch.serialization.load",
        "torch.hub.load",
        "torch.jit.load",
        "numpy.load",
        "numpy.lib.npyio.load",
        "numpy.fromfile",
        "numpy.loadtxt",
        "numpy.genfromtxt",
        "numpy.memmap",
        "numpy.testing._private.utils.runstring",
        "numpy.f2py.diagnose.run_command",
        "numpy.distutils.exec_command.exec_command",
    }
)


def never_constructed(dotted: str) -> bool:
    """Is ``dotted`` in a module amber never constructs from, or a loader of files?"""
    if dotted in NEVER_NAMES:
        return True
    module = dotted
    while True:
        if module in NEVER_MODULES:
            return True
        if "." not in module:
            return False
        module = module.rsplit(".", 1)[0]

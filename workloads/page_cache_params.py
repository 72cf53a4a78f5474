"""Parameters of the ``page_cache`` workload: a file set that grows, is re-read and written.

This module only parses, checks and dumps the YAML keys; the generator and the kernel
functions it mirrors are in :mod:`workloads.page_cache`.

Example::

    - name: cache
      type: page_cache
      size: 256MiB          # the file set's size when fully grown
      rate: 400/s           # growth: one chunk read (or written) into a new page range
      grow_by: read         # read: readahead, clean pages; write: buffered writes, dirty
      reread_rate: 200/s    # chunk re-reads at random places (folio_mark_accessed())
      write_rate: 50/s      # chunk overwrites at random places (folio_mark_dirty())
      # optional: chunk (128KiB), file_size (= size), lifetime (forever: files are never
      # unlinked), dirty_expire (30s), writeback_interval (5s; 0: no periodic
      # writeback), cpus, nid, max_requests (growth chunks), start
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from simcore.config.fields import (
    child,
    expect_duration_ns,
    expect_mapping,
    expect_rate_per_s,
    expect_size_pages,
    expect_str,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig
from simcore.config.units import format_duration, format_rate, format_size
from simcore.errors import ConfigError
from workloads.schema import PAGE_CACHE
from workloads.synthetic_params import (
    LifetimeSpec,
    _cpus,
    _dump_lifetime,
    _lifetime,
    _optional_int,
    check_cpus_and_node,
)

PAGE_CACHE_KEYS = names(PAGE_CACHE)
PAGE_CACHE_REQUIRED = required(PAGE_CACHE)
GROW_BY = ("read", "write")
VM_READAHEAD_PAGES = 32
"""``VM_READAHEAD_PAGES`` (128 KiB): the default ``read_ahead_kb`` of a block device."""
DIRTY_EXPIRE_NS = 30_000_000_000
"""``vm.dirty_expire_centisecs`` = 3000."""
DIRTY_WRITEBACK_NS = 5_000_000_000
"""``vm.dirty_writeback_centisecs`` = 500."""
PAGE_SIZE = 4096


@dataclass(frozen=True)
class PageCacheParams:
    """Parsed parameters of one ``page_cache`` workload.

    Attributes:
        size_pages: The file set's length when fully grown; growth pauses there.
        rate_per_s: Poisson arrival rate of growth chunks.
        chunk_pages: Pages per read or write (a readahead window).
        grow_by: ``read`` (readahead: clean pages) or ``write`` (buffered writes: dirty).
        file_size_pages: Length of each file; a new file starts when one is full.
        lifetime: How long a file lives before it is unlinked (its pages freed).
        reread_rate_per_s: Chunk re-reads at random places (None: none).
        write_rate_per_s: Chunk overwrites at random places (None: none).
        dirty_expire_ns: ``dirty_expire_centisecs``: age at which dirty data is written.
        writeback_interval_ns: ``dirty_writeback_centisecs`` (0: no periodic writeback).
        cpus, nid, start_ns: As for the synthetic workload (``nid``: a preferred node).
        max_requests: Stop growing after this many chunks.
    """

    size_pages: int
    rate_per_s: float
    chunk_pages: int = VM_READAHEAD_PAGES
    grow_by: str = "read"
    file_size_pages: int | None = None
    lifetime: LifetimeSpec = LifetimeSpec("forever")
    reread_rate_per_s: float | None = None
    write_rate_per_s: float | None = None
    dirty_expire_ns: int = DIRTY_EXPIRE_NS
    writeback_interval_ns: int = DIRTY_WRITEBACK_NS
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0

    @property
    def file_pages(self) -> int:
        """Length of each file (the whole set when ``file_size`` is not given)."""
        return self.file_size_pages or self.size_pages

    def expected_requests(self, duration_ns: int) -> float:
        """An upper bound of the page allocations a run of ``duration_ns`` makes.

        Every growth chunk, re-read and write allocating a whole chunk.
        """
        active_s = max(0, duration_ns - self.start_ns) / 1e9
        grow = self.rate_per_s * active_s
        if self.max_requests is not None:
            grow = min(grow, self.max_requests)
        other = (self.reread_rate_per_s or 0.0) + (self.write_rate_per_s or 0.0)
        return (grow + other * active_s) * self.chunk_pages


def _optional_rate(value: object, key: str, source: str) -> float | None:
    return None if value is None else expect_rate_per_s(value, key, source)


def parse_page_cache_params(raw: Mapping[str, object], key_prefix: str,
                            source: str) -> Mapping[str, object]:
    """Parse a ``page_cache`` workload's keys; ``size`` and ``rate`` are required.

    Raises:
        ConfigError: Naming e.g. ``workloads[0].file_size``.
    """
    data = expect_mapping(raw, key_prefix, source, PAGE_CACHE_KEYS, PAGE_CACHE_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    size = expect_size_pages(data["size"], key("size"), source, 1)
    file_size = data.get("file_size")
    params = PageCacheParams(
        size_pages=size,
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        chunk_pages=expect_size_pages(data.get("chunk", VM_READAHEAD_PAGES * PAGE_SIZE),
                                      key("chunk"), source, 1),
        grow_by=expect_str(data.get("grow_by", "read"), key("grow_by"), source, GROW_BY),
        file_size_pages=(None if file_size is None
                         else expect_size_pages(file_size, key("file_size"), source, 1)),
        lifetime=_lifetime(data.get("lifetime", "forever"), key("lifetime"), source),
        reread_rate_per_s=_optional_rate(data.get("reread_rate"), key("reread_rate"), source),
        write_rate_per_s=_optional_rate(data.get("write_rate"), key("write_rate"), source),
        dirty_expire_ns=expect_duration_ns(data.get("dirty_expire", "30s"),
                                           key("dirty_expire"), source),
        writeback_interval_ns=expect_duration_ns(data.get("writeback_interval", "5s"),
                                                 key("writeback_interval"), source),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
        nid=_optional_int(data.get("nid"), key("nid"), source, 0),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
    )
    if params.file_pages > size:
        raise ConfigError(source, key("file_size"),
                          f"at most the file set's size ({size} pages)", file_size)
    return {"params": params}


def check_page_cache_params(params: Mapping[str, object], machine: MachineConfig,
                            key_prefix: str, source: str) -> None:
    """Reject CPUs or a node the machine does not have."""
    p = params["params"]
    assert isinstance(p, PageCacheParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)


def dump_page_cache_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_page_cache_params`, in human units."""
    p = params["params"]
    if not isinstance(p, PageCacheParams):
        raise TypeError(f"expected PageCacheParams under 'params', got {p!r}")

    def rate(value: float | None) -> str | None:
        return None if value is None else format_rate(value)

    return {
        "size": format_size(p.size_pages * PAGE_SIZE),
        "rate": format_rate(p.rate_per_s),
        "chunk": format_size(p.chunk_pages * PAGE_SIZE),
        "grow_by": p.grow_by,
        "file_size": (None if p.file_size_pages is None
                      else format_size(p.file_size_pages * PAGE_SIZE)),
        "lifetime": _dump_lifetime(p.lifetime),
        "reread_rate": rate(p.reread_rate_per_s),
        "write_rate": rate(p.write_rate_per_s),
        "dirty_expire": format_duration(p.dirty_expire_ns),
        "writeback_interval": format_duration(p.writeback_interval_ns),
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
    }

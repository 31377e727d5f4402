"""The chip's RTL, Verilated into a shared library and driven in bulk from Python.

:class:`VerilatorTransport` runs the ``chip`` top (:class:`rtl.chip.ChipHost`: one request
stream, one response stream, every request answered once and in order) in-process:

- **The model.** ``verilator --cc --build`` compiles the generated Verilog of the top together
  with ``hdl/stream_top.cpp``, a small ``extern "C"`` wrapper for any Amaranth one-in/one-out
  stream top; the objects are linked into one shared library that :mod:`ctypes` loads. The
  wrapper's ``stream_top_run`` streams a whole batch of requests in and collects the responses
  with the clock loop in C++, so Python is never on the per-cycle path: a 1 MiB write is one
  call. Each instance owns its own ``VerilatedContext`` and model, so several chips live in one
  process and step independently.
- **The cache.** A build goes to ``build/sim/verilator-<preset>-<hash>/``, keyed by the Verilog
  text, the wrapper source, the Verilator control files and every flag, so later instances (in
  any process) load it at once. A file lock makes parallel workers (pytest-xdist) wait for one
  build instead of racing; the library is written under a temporary name and renamed, so a
  killed build never leaves a half-written one behind.
- **The build.** Verilator 5 schedules code per *instance*: a module kept out of line
  (``rtl/waivers.vlt``) is still emitted once per instance, with that instance's port
  connections folded in. Flat, M890's 256 PEs and 16 vector lanes are 126 MB of the
  142 MB of C++ the chip becomes. Arrays of :data:`HIERARCHICAL_MIN_PES` PEs or more are
  therefore Verilated hierarchically (``--hierarchical``, ``rtl/hier_blocks.vlt``): the PE and
  the lane are each compiled once, as libraries of their own called per instance. Measured
  on 2 cores (build; simulated cycles per CPU second):

  ============  =================  ==================
  preset        flat               hierarchical
  ============  =================  ==================
  TINY (4×4)    33–57 s; 100 k/s   68 s; 61 k/s
  ZW810E (8×8)  161 s; 33 k/s      95 s; 21 k/s
  M890 (16×16)  325 s; 4.0 k/s     83–116 s; 5.0 k/s
  ============  =================  ==================

  Small arrays run faster flat (a hierarchical block costs a call and a model evaluation per
  instance per cycle); at M890's size the flat code no longer fits the caches and the
  hierarchical model is faster as well as three to four times quicker to build. The
  generated C++ is compiled at Verilator's default ``-Os``: ``-O2`` doubled the compile time
  for +6 % (TINY) and 0 % (M890) of speed; ``-O1`` saved 15 % of the compile and lost 8 % of
  the speed.
- **The packing.** Requests are built as arrays, one row per stripe, and packed into the
  32-bit words of the payload with numpy bit operations (no Python int per request); the
  field positions come from the Amaranth layouts (:func:`rtl.chip.chip_host_request_layout`).

Memory accesses of any address and length are split into stripe requests, the partial stripes
written under byte masks. An access outside HBM raises ``ValueError`` before anything is sent,
like :meth:`golden_model.chip.ChipModel.mem_write`.
"""

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from golden_model.chip import hbm_span
from rtl.chip import ChipHostOp, chip_host_request_layout, chip_host_response_layout
from rtl.layouts import Status

from ..errors import DeviceTimeout, TransportError
from .base import Transport


__all__ = ["VerilatorTransport", "StreamTransport", "StreamTop", "build_library",
           "build_options", "VERILATOR_ARGS", "pack_rows", "unpack_field"]

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = Path(__file__).parent / "hdl" / "stream_top.cpp"
#: Verilator control files of every build: the lint waivers (which also keep the shared
#: modules out of line).
CONTROL_FILES = (ROOT / "rtl" / "waivers.vlt",)
#: The shared modules as hierarchical blocks (hierarchical builds only).
HIER_BLOCKS = ROOT / "rtl" / "hier_blocks.vlt"
#: Arrays with at least this many processing elements are Verilated hierarchically.
HIERARCHICAL_MIN_PES = 128

#: Verilator arguments of every build (besides sources, prefix, top and output folder).
VERILATOR_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal",
                  # An `always @*` that reads nothing never runs in Verilator: the logic it
                  # describes would silently be missing, so it fails the build.
                  "-Werror-ALWNEVER",
                  "-Wno-lint", "-Wno-style", "-CFLAGS", "-fPIC")


def build_options(cfg):
    """``(verilator arguments, control files)`` of the build for ``cfg``."""
    if cfg.mxu_rows * cfg.mxu_cols >= HIERARCHICAL_MIN_PES:
        return (*VERILATOR_ARGS, "--hierarchical"), (*CONTROL_FILES, HIER_BLOCKS)
    return VERILATOR_ARGS, CONTROL_FILES


#: Parallel compiler jobs of a build.
BUILD_JOBS = max(1, min(os.cpu_count() or 1, 4))

#: Cycles without a response after which a memory or CSR batch counts as hung. A host-port
#: request waits behind the command processor and the DMA engine (higher HBM priorities), so
#: this is generous.
BATCH_WATCHDOG = 1 << 24
#: Requests per call into the model (bounds the packed buffers).
CHUNK = 1 << 15

_LIB_NAME = "libm890_stream_top.so"


def print_to_stderr(message):
    print(message, file=sys.stderr, flush=True)


# -- packing ------------------------------------------------------------------------------------

def _fields(layout):
    from amaranth.hdl import Shape
    return {name: (field.offset, Shape.cast(field.shape).width) for name, field in layout}


def pack_rows(layout, words, rows, values):
    """Pack field arrays into payload words: an ``(rows, words)`` uint32 array.

    ``values`` maps field names to uint8 arrays of shape ``(rows, nbytes)`` holding each
    field's little-endian bytes (bit ``k`` of the field is bit ``k % 8`` of byte ``k // 8``;
    bits past the field width are ignored), or to an int, broadcast to every row. Missing
    fields are 0.
    """
    fields = _fields(layout)
    out = np.zeros((rows, 4 * words), np.uint8)
    bits = None
    for name, value in values.items():
        offset, width = fields[name]
        nbytes = (width + 7) // 8
        if isinstance(value, (int, np.integer)):
            value = np.frombuffer(int(value).to_bytes(nbytes, "little"), np.uint8)
            value = np.broadcast_to(value, (rows, nbytes))
        value = np.asarray(value, np.uint8).reshape(rows, -1)[:, :nbytes]
        if offset % 8 == 0 and width % 8 == 0:
            out[:, offset // 8:offset // 8 + nbytes] = value
            continue
        if bits is None:
            bits = np.zeros((rows, 32 * words), np.uint8)
        bits[:, offset:offset + width] = np.unpackbits(value, axis=1, count=width,
                                                       bitorder="little")
    if bits is not None:
        out |= np.packbits(bits, axis=1, bitorder="little")
    return out.view("<u4")


def unpack_field(layout, payload, name):
    """Field ``name`` of every row of ``payload`` (``(rows, words)`` uint32), as an
    ``(rows, nbytes)`` uint8 array of its little-endian bytes."""
    offset, width = _fields(layout)[name]
    raw = np.ascontiguousarray(payload).view(np.uint8).reshape(len(payload), -1)
    nbytes = (width + 7) // 8
    if offset % 8 == 0 and width % 8 == 0:
        return raw[:, offset // 8:offset // 8 + nbytes]
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, offset:offset + width]
    return np.packbits(bits, axis=1, bitorder="little")


def _le_int(rows):
    """``(rows, nbytes)`` little-endian bytes → uint64 (nbytes ≤ 8)."""
    padded = np.zeros((len(rows), 8), np.uint8)
    padded[:, :rows.shape[1]] = rows
    return padded.view("<u8")[:, 0]


# -- build --------------------------------------------------------------------------------------

def _verilator_version(env):
    try:
        r = subprocess.run(["verilator", "--version"], env=env, capture_output=True, text=True)
        return r.stdout.strip()
    except OSError as e:
        raise TransportError(f"Verilator is not installed or not runnable: {e}") from None


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no build log)"
    errors = [ln for ln in text if "error" in ln.lower()][:10]
    return "\n".join((errors + ["..."] if errors else []) + text[-lines:])


def build_library(cfg, *, build_dir=None, log=print_to_stderr, top="chip"):
    """Build (once) the shared library of ``top`` for ``cfg``; return its path and sidecar.

    The library is cached under ``build_dir`` (default ``build/sim``) in a folder keyed by
    every input of the build. Raises :class:`TransportError` if Verilator or the compiler
    fails, with the end of the build log.
    """
    from filelock import FileLock

    from verif.common.runner import verilog_for
    from verif.common.toolchain import setup_verilator_env

    t0 = time.monotonic()
    v_path = verilog_for(top, cfg)
    if time.monotonic() - t0 > 2:
        log(f"generated the Verilog of the {cfg.name} {top} in {time.monotonic() - t0:.0f} s")
    sidecar = json.loads(v_path.with_suffix(".json").read_text())
    env = setup_verilator_env(dict(os.environ))
    args, control = build_options(cfg)
    h = hashlib.sha256()
    for part in (v_path.read_bytes(), WRAPPER.read_bytes(),
                 *(p.read_bytes() for p in control), repr((args, top)).encode(),
                 _verilator_version(env).encode()):
        h.update(hashlib.sha256(part).digest())
    key = h.hexdigest()[:16]
    root = Path(build_dir) if build_dir is not None else ROOT / "build" / "sim"
    out = root / f"verilator-{cfg.name}-{key}"
    lib = out / _LIB_NAME
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if lib.exists():
            return lib, sidecar
        # One build at a time in a cache: two at once on a small machine only thrash.
        with FileLock(str(root / "verilator-build.lock")):
            _build(cfg, top, out, lib, v_path, sidecar, args, control, env, log)
    return lib, sidecar


def _build(cfg, top, out, lib, v_path, sidecar, args, control, env, log):
    """Run Verilator and the link into ``out``; the library appears at ``lib`` only when
    complete."""
    log(f"building the {cfg.name} {top} simulator (first time only)… [{out}]")
    t0 = time.monotonic()
    if out.exists():
        shutil.rmtree(out)
    obj = out / "obj"
    obj.mkdir(parents=True)
    build_log = out / "build.log"
    cmd = ["verilator", "--cc", "--build", "-j", str(BUILD_JOBS), "--prefix", "Vtop",
           "--top-module", sidecar["module"], "-Mdir", str(obj), *args,
           *map(str, control), str(v_path), str(WRAPPER)]
    link = [os.environ.get("CXX", "c++"), "-shared", "-o", str(lib) + ".tmp",
            "-Wl,--whole-archive", str(obj / "libVtop.a"), "-Wl,--no-whole-archive",
            str(obj / "libverilated.a"), "-pthread", "-Wl,-Bsymbolic",
            "-Wl,--version-script=" + str(_version_script(out))]
    with open(build_log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        for step in (cmd, link):
            try:
                r = subprocess.run(step, env=env, stdout=f, stderr=subprocess.STDOUT,
                                   cwd=out)
            except OSError as e:
                raise TransportError(f"could not run {step[0]}: {e}") from None
            if r.returncode != 0:
                f.flush()
                raise TransportError(
                    f"building the {cfg.name} {top} simulator failed ({step[0]} exited "
                    f"with {r.returncode}); log {build_log}:\n{_tail(build_log)}")
    os.replace(str(lib) + ".tmp", lib)
    # The library is self-contained; the objects (hundreds of MB for M890) are not needed.
    shutil.rmtree(obj, ignore_errors=True)
    dt = time.monotonic() - t0
    (out / "built.json").write_text(json.dumps(
        {"seconds": round(dt, 1), "command": cmd, "verilog": str(v_path)}, indent=2)
        + "\n")
    log(f"built the {cfg.name} {top} simulator in {dt:.0f} s")


def _version_script(out):
    """A linker version script exporting only the wrapper's C functions, so that two
    libraries (two configurations) loaded into one process never bind each other's
    Verilator symbols."""
    p = out / "exports.map"
    p.write_text("{\n  global: stream_top_*;\n  local: *;\n};\n")
    return p


# -- the loaded model ---------------------------------------------------------------------------

_LIBS = {}


def _load(path):
    path = str(path)
    lib = _LIBS.get(path)
    if lib is None:
        lib = ctypes.CDLL(path)
        vp, sz, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64
        lib.stream_top_create.restype = vp
        lib.stream_top_create.argtypes = []
        lib.stream_top_destroy.restype = None
        lib.stream_top_destroy.argtypes = [vp]
        lib.stream_top_words.restype = sz
        lib.stream_top_words.argtypes = [ctypes.c_int]
        lib.stream_top_reset.restype = None
        lib.stream_top_reset.argtypes = [vp, u64]
        lib.stream_top_step.restype = None
        lib.stream_top_step.argtypes = [vp, u64]
        lib.stream_top_run.restype = sz
        lib.stream_top_run.argtypes = [vp, vp, sz, vp, sz, u64]
        lib.stream_top_taken.restype = u64
        lib.stream_top_taken.argtypes = [vp]
        lib.stream_top_cycles.restype = u64
        lib.stream_top_cycles.argtypes = [vp]
        _LIBS[path] = lib
    return lib


class StreamTop:
    """One instance of a Verilated stream top (a loaded library and a model handle).

    Parameters
    ----------
    lib_path : Path
        The library :func:`build_library` returned.
    in_width, out_width : int
        Payload widths of the ``i`` and ``o`` streams (from the sidecar), checked against the
        model's ports.
    """

    def __init__(self, lib_path, in_width, out_width):
        self._lib = _load(lib_path)
        self.in_words = self._lib.stream_top_words(0)
        self.out_words = self._lib.stream_top_words(1)
        for what, width, words in (("input", in_width, self.in_words),
                                   ("output", out_width, self.out_words)):
            if words != max(1, (width + 31) // 32):
                raise TransportError(f"the model's {what} payload has {words} words, the "
                                     f"top's port is {width} bits")
        self._handle = self._lib.stream_top_create()
        if not self._handle:
            raise TransportError("could not create the model")
        self.taken = 0

    def reset(self, cycles=4):
        self._lib.stream_top_reset(self._handle, cycles)

    def step(self, cycles):
        self._lib.stream_top_step(self._handle, cycles)

    def run(self, requests, n_resp=None, watchdog=0):
        """Stream ``requests`` (``(n, in_words)`` uint32) in; return the ``(got, out_words)``
        responses (``got`` < ``n_resp`` if ``watchdog`` cycles passed without one). The
        number of requests the top took is left in :attr:`taken`."""
        req = np.ascontiguousarray(requests, dtype=np.uint32)
        n = len(req)
        n_resp = n if n_resp is None else n_resp
        resp = np.zeros((n_resp, self.out_words), np.uint32)
        got = self._lib.stream_top_run(self._handle, req.ctypes.data, n, resp.ctypes.data,
                                       n_resp, int(watchdog))
        self.taken = self._lib.stream_top_taken(self._handle)
        return resp[:got]

    @property
    def cycles(self):
        return self._lib.stream_top_cycles(self._handle)

    def close(self):
        if getattr(self, "_handle", None):
            self._lib.stream_top_destroy(self._handle)
            self._handle = None

    def __del__(self):
        self.close()


# -- the transport ------------------------------------------------------------------------------

class StreamTransport(Transport):
    """A transport on any simulation of :class:`rtl.chip.ChipHost`'s request/response stream.

    ``top`` runs batches: ``run(requests, n_resp=None, watchdog=0)`` takes packed requests
    (``(n, in_words)`` uint32) and returns the packed responses, leaving the number of
    requests taken in ``taken``; ``step(cycles)``, ``cycles`` and ``close()``. This class does
    the rest: splitting memory accesses into stripes, packing, status checks, waits.
    """

    cycle_accurate = True

    def __init__(self, cfg, top):
        super().__init__(cfg)
        self._stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
        self._req_layout = chip_host_request_layout(cfg)
        self._resp_layout = chip_host_response_layout(cfg)
        self._top = top
        self._broken = None

    # -- requests -----------------------------------------------------------------------------

    def _pack(self, n, op, addr, data=None, mask=None):
        values = {"op": op.value, "addr": addr}
        if data is not None:
            values["data"] = data
        if mask is not None:
            values["mask"] = mask
        return pack_rows(self._req_layout, self._top.in_words, n, values)

    def _exchange(self, requests, watchdog=BATCH_WATCHDOG):
        """Send packed requests in chunks; return ``(status (n,), payload (n, words))``."""
        if self._broken:
            raise TransportError(f"the simulator is out of step: {self._broken}")
        outs = []
        for lo in range(0, len(requests), CHUNK):
            chunk = requests[lo:lo + CHUNK]
            resp = self._top.run(chunk, watchdog=watchdog)
            if len(resp) != len(chunk):
                self._broken = (f"{len(chunk) - len(resp)} of {len(chunk)} requests got no "
                                f"response within {watchdog} cycles")
                raise TransportError(f"the chip stopped answering: {self._broken}")
            outs.append(resp)
        resp = np.concatenate(outs) if len(outs) != 1 else outs[0]
        status = unpack_field(self._resp_layout, resp, "status")[:, 0]
        return status, resp

    def _span(self, addr, n):
        return hbm_span(self.cfg, addr, n)

    def _stripes(self, addr, n):
        s = self._stripe
        lo = addr // s * s
        hi = -(-(addr + n) // s) * s
        k = (hi - lo) // s
        addrs = (lo + s * np.arange(k, dtype=np.uint64)).astype("<u8")
        return lo, k, addrs.view(np.uint8).reshape(k, 8)

    def _check(self, status, what):
        bad = np.flatnonzero(status != Status.SUCCESS.value)
        if len(bad):
            code = int(status[bad[0]])
            raise TransportError(f"{what}: {len(bad)} stripe request(s) refused, the first "
                                 f"with status {code:#04x}")

    def write(self, addr, data):
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        else:
            data = np.frombuffer(bytes(data), np.uint8)
        addr, n = self._span(addr, data.size)
        if n == 0:
            return
        s = self._stripe
        lo, k, addrs = self._stripes(addr, n)
        buf = np.zeros(k * s, np.uint8)
        buf[addr - lo:addr - lo + n] = data
        sel = np.zeros(k * s, np.uint8)
        sel[addr - lo:addr - lo + n] = 1
        mask = np.packbits(sel.reshape(k, s), axis=1, bitorder="little")
        req = self._pack(k, ChipHostOp.MEM_WRITE, addrs, buf.reshape(k, s), mask)
        status, _ = self._exchange(req)
        self._check(status, f"write of {n} bytes at {addr:#x}")

    def read(self, addr, n):
        addr, n = self._span(addr, n)
        if n == 0:
            return b""
        lo, k, addrs = self._stripes(addr, n)
        status, resp = self._exchange(self._pack(k, ChipHostOp.MEM_READ, addrs))
        self._check(status, f"read of {n} bytes at {addr:#x}")
        data = unpack_field(self._resp_layout, resp, "data")[:, :self._stripe].reshape(-1)
        return data[addr - lo:addr - lo + n].tobytes()

    def _csr(self, op, addr, value=0):
        addr = int(addr)
        if not 0 <= addr < 1 << 64:
            raise ValueError(f"CSR address {addr:#x} is not a 64-bit address")
        a = np.frombuffer(addr.to_bytes(8, "little"), np.uint8).reshape(1, 8)
        d = np.frombuffer(int(value).to_bytes(4, "little"), np.uint8).reshape(1, 4)
        status, resp = self._exchange(self._pack(1, op, a, d))
        value = int(_le_int(unpack_field(self._resp_layout, resp, "data")[:, :4])[0])
        return value, Status(int(status[0]))

    def csr_write(self, addr, value):
        value = int(value)
        if not 0 <= value <= 0xFFFF_FFFF:
            raise ValueError(f"a CSR value is 32 bits, not {value:#x}")
        return self._csr(ChipHostOp.CSR_WRITE, addr, value)[1]

    def csr_read(self, addr):
        return self._csr(ChipHostOp.CSR_READ, addr)

    def wait_idle(self, max_cycles):
        """Send ``WAIT_IDLE`` and let the chip run until it answers.

        Raises :class:`DeviceTimeout` after ``max_cycles`` cycles without the answer (None:
        no limit). The request is then withdrawn, untaken, so the chip stays usable: the host
        can read the state or reset the queues.
        """
        if self._broken:
            raise TransportError(f"the simulator is out of step: {self._broken}")
        watchdog = 0 if max_cycles is None else max(1, int(max_cycles))
        z = np.zeros((1, 8), np.uint8)
        req = self._pack(1, ChipHostOp.WAIT_IDLE, z)
        resp = self._top.run(req, watchdog=watchdog)
        if len(resp) == 0 and self._top.taken:
            # Taken on the last cycle: its answer is one cycle away.
            resp = self._top.run(req[:0], n_resp=1, watchdog=BATCH_WATCHDOG)
            if len(resp) == 0:
                self._broken = "a WAIT_IDLE was taken and never answered"
                raise TransportError(self._broken)
        if len(resp) == 0:
            raise DeviceTimeout(f"the chip was not idle after {max_cycles:,} cycles")
        status = int(unpack_field(self._resp_layout, resp, "status")[0, 0])
        if status != Status.SUCCESS.value:
            raise TransportError(f"WAIT_IDLE answered with status {status:#04x}")

    def step(self, cycles):
        """Let the chip run ``cycles`` cycles with the host port idle."""
        self._top.step(int(cycles))

    @property
    def cycles(self):
        return self._top.cycles

    def close(self):
        top = getattr(self, "_top", None)
        if top is not None:
            top.close()


class VerilatorTransport(StreamTransport):
    """The Verilated ``chip`` top as a transport (see the module docstring).

    Parameters
    ----------
    cfg : ChipConfig
    build_dir : path, optional
        Root of the build cache (default ``build/sim`` of the project).
    log : callable
        Receives progress messages (builds); stderr by default.

    Attributes
    ----------
    library : Path
        The shared library of the model.
    """

    name = "rtl"
    cycle_accurate = True

    def __init__(self, cfg, *, build_dir=None, log=print_to_stderr):
        lib, sidecar = build_library(cfg, build_dir=build_dir, log=log)
        widths = {p["name"]: p["width"] for p in sidecar["ports"]}
        if widths["i__payload"] != chip_host_request_layout(cfg).size or \
                widths["o__payload"] != chip_host_response_layout(cfg).size:
            raise TransportError("the generated top's payloads do not match the host layouts")
        self.library = lib
        top = StreamTop(lib, widths["i__payload"], widths["o__payload"])
        top.reset()
        super().__init__(cfg, top)

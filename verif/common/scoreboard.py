"""In-order scoreboard: expected transactions from the golden model, actual ones from the DUT."""

import logging

import numpy as np


__all__ = ["Scoreboard", "ScoreboardError", "compare_bulk", "compare_responses"]


class ScoreboardError(AssertionError):
    """The DUT disagreed with the golden model, or transactions were left over."""


class Scoreboard:
    """Compare actual against expected transactions in order.

    Mismatches are logged as expected-vs-actual (ints in hex) with the transaction index and
    counted; :meth:`check` raises at the end if there was any mismatch, or if either side still
    holds transactions (nothing may be lost or invented).

    Parameters
    ----------
    name : str
        Used in log lines.
    compare : callable, optional
        ``compare(expected, actual) -> bool``; equality by default.
    max_logged : int
        Mismatches logged in full; the rest are only counted.
    """

    def __init__(self, name, *, compare=None, max_logged=10, log=None):
        self.name = name
        self.compare = compare or (lambda e, a: e == a)
        self.max_logged = max_logged
        self.log = log or logging.getLogger(f"scoreboard.{name}")
        self.expected = []
        self.actual = []
        self.matched = 0
        self.errors = 0
        self._index = 0

    def expect(self, item):
        self.expected.append(item)
        self._drain()

    def got(self, item):
        self.actual.append(item)
        self._drain()

    def _drain(self):
        while self.expected and self.actual:
            e = self.expected.pop(0)
            a = self.actual.pop(0)
            if self.compare(e, a):
                self.matched += 1
            else:
                self.errors += 1
                if self.errors <= self.max_logged:
                    self.log.error("%s #%d: expected %s, got %s", self.name, self._index,
                                   _fmt(e), _fmt(a))
            self._index += 1

    def check(self):
        """Raise :class:`ScoreboardError` unless everything matched and nothing is left."""
        problems = []
        if self.errors:
            problems.append(f"{self.errors} mismatch(es) of {self._index}")
        if self.expected:
            problems.append(f"{len(self.expected)} expected transaction(s) never arrived")
        if self.actual:
            problems.append(f"{len(self.actual)} unexpected transaction(s)")
        if problems:
            raise ScoreboardError(f"{self.name}: " + "; ".join(problems))
        self.log.info("%s: %d transaction(s) matched", self.name, self.matched)
        return self.matched


def _fmt(x):
    if isinstance(x, int):
        return hex(x)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in x.items()) + "}"
    if isinstance(x, tuple):
        return "(" + ", ".join(_fmt(v) for v in x) + ")"
    return repr(x)


def compare_bulk(name, expected, got, inputs=None, *, log=None, max_logged=10):
    """Compare dicts of equal-length arrays element-wise; raise on any difference.

    Every field of ``expected`` must be present in ``got``. The first ``max_logged`` mismatching
    indices are logged with all input, expected and actual fields in hex.

    Returns the number of vectors compared.
    """
    import numpy as np
    log = log or logging.getLogger(f"scoreboard.{name}")
    n = None
    bad = None
    for field, e in expected.items():
        e = np.asarray(e)
        a = np.asarray(got[field])
        if n is None:
            n = len(e)
        if len(a) != n or len(e) != n:
            raise ScoreboardError(f"{name}: {len(a)} results for {n} expected ({field})")
        diff = e.astype(np.int64) != a.astype(np.int64)
        bad = diff if bad is None else (bad | diff)
    idx = np.flatnonzero(bad)
    for i in idx[:max_logged]:
        ins = {k: int(v[i]) for k, v in (inputs or {}).items()}
        exp = {k: int(np.asarray(v)[i]) for k, v in expected.items()}
        act = {k: int(np.asarray(got[k])[i]) for k in expected}
        log.error("%s #%d: inputs %s expected %s got %s", name, i, _fmt(ins), _fmt(exp), _fmt(act))
    if len(idx):
        raise ScoreboardError(f"{name}: {len(idx)} of {n} vectors differ from the golden model")
    return n


def compare_responses(name, ops, exp_status, got_status, exp_data, got_data, *, op_name, log):
    """Compare the responses of a batch of host-port requests; raise on any difference.

    ``ops`` are the ``(op, addr, data)`` requests; ``exp_data[i]`` / ``got_data[i]`` may be
    ``None`` for responses whose data is not checked. ``op_name(code)`` names an op code in
    the log. The statuses are also compared in bulk (a second, independent comparison path).
    """
    bad = [i for i in range(len(ops))
           if int(exp_status[i]) != int(got_status[i]) or exp_data[i] != got_data[i]]
    for i in bad[:10]:
        log.error("%s: request %d (op %s, addr %#x): expected status %#x data %s, got status "
                  "%#x data %s", name, i, op_name(ops[i][0]), ops[i][1], int(exp_status[i]),
                  _hex(exp_data[i]), int(got_status[i]), _hex(got_data[i]))
    if bad:
        raise ScoreboardError(f"{name}: {len(bad)} of {len(ops)} responses differ from the "
                              f"golden model")
    compare_bulk(name, {"status": np.asarray(exp_status)}, {"status": np.asarray(got_status)},
                 log=log)


def _hex(x):
    return "-" if x is None else hex(int(x))

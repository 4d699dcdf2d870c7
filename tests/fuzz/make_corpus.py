#!/usr/bin/env python3
"""make_corpus.py - writes the seed corpus of fuzz_manager.c into corpus/.

One file per seed: a selector byte (0: request, 2: reply, 3: handshake
message) and a well-formed message of the manager's wire format
(src/managerd/mgr.h), one for every operation, so that the fuzzer starts
from inputs that reach deep into execution.  Run it again after changing
the format; the files are committed.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

# Operations and object types as in src/managerd/mgr.h and mproc/manager.h.
OPS = dict(PING=1, OPEN=2, REMOVE=3, TYPE=4, SHUTDOWN=5,
           D_SET=16, D_GET=17, D_DEL=18, D_HAS=19, D_LEN=20, D_KEYS=21, D_ITEMS=22,
           D_POP=23, D_SETDEFAULT=24, D_UPDATE=25, D_CLEAR=26, D_INCR=27, D_CAS=28, D_TXN=29,
           L_APPEND=40, L_EXTEND=41, L_GET=42, L_SET=43, L_INSERT=44, L_POP=45, L_REMOVE=46,
           L_LEN=47, L_CLEAR=48, L_SLICE=49, Q_PUT=50, Q_GET=51, Q_SIZE=52,
           K_ACQUIRE=64, K_RELEASE=65, S_ACQUIRE=66, S_RELEASE=67, S_VALUE=68, E_SET=69,
           E_CLEAR=70, E_ISSET=71, E_WAIT=72, C_WAIT=73, C_NOTIFY=74, B_WAIT=75, B_ABORT=76,
           B_RESET=77, B_BROKEN=78, V_GET=96, V_SET=97, V_ADD=98, A_LEN=99, A_GET=100,
           A_SET=101, A_READ=102, A_WRITE=103)
TYPES = dict(DICT=1, LIST=2, NAMESPACE=3, LOCK=4, RLOCK=5, SEM=6, BSEM=7, COND=8, EVENT=9,
             BARRIER=10, QUEUE=11, VALUE=12, ARRAY=13)


def req(op, obj=0, gen=1, a=0, b=0, x=0.0, flags=0, strs=(), tid=7, seq=1):
    body = struct.pack("<BBHIIIIIqqdd", 1, 1, OPS[op], seq, obj, gen, tid,
                       flags | (len(strs) << 16), a, b, x, 0.0)
    for s in strs:
        body += struct.pack("<I", len(s)) + s
    return bytes([0]) + body


def rep(op, status=0, strs=(), a=0, b=0):
    body = struct.pack("<BBHIiIqqd", 1, 2, OPS[op], 1, status, len(strs), a, b, 0.0)
    for s in strs:
        body += struct.pack("<I", len(s)) + s
    return bytes([2]) + body


def seeds():
    # Objects of every type: slot i holds type i+1 in a fresh store.
    params = dict(SEM=2, BSEM=1, BARRIER=2, QUEUE=4, ARRAY=16)
    for i, (name, t) in enumerate(TYPES.items()):
        flags = (9 << 8) if name in ("VALUE", "ARRAY") else 0  # element type 'q'
        yield "open_%s" % name.lower(), req("OPEN", a=t, b=params.get(name, 0), flags=flags,
                                            strs=[name.lower().encode()])
    yield "open_anonymous", req("OPEN", a=1, strs=[b""])
    d, l, ns, lk, rl, sem, bsem, cond, ev, bar, q, val, arr = range(13)
    yield "d_set", req("D_SET", obj=d, strs=[b"key", b"value"])
    yield "d_get", req("D_GET", obj=d, b=64, strs=[b"key"])
    yield "d_del", req("D_DEL", obj=d, strs=[b"key"])
    yield "d_has", req("D_HAS", obj=d, strs=[b"key"])
    yield "d_len", req("D_LEN", obj=d)
    yield "d_keys", req("D_KEYS", obj=d)
    yield "d_items", req("D_ITEMS", obj=ns)
    yield "d_pop", req("D_POP", obj=d, b=64, strs=[b"key"])
    yield "d_setdefault", req("D_SETDEFAULT", obj=d, b=64, strs=[b"k2", b"dflt"])
    yield "d_update", req("D_UPDATE", obj=d, strs=[b"a", b"1", b"b", b"22", b"c", b"333"])
    yield "d_clear", req("D_CLEAR", obj=d)
    yield "d_incr", req("D_INCR", obj=d, a=5, strs=[b"n"])
    yield "d_cas", req("D_CAS", obj=d, flags=1, strs=[b"c", b"new", b"old"])
    yield "d_cas_absent", req("D_CAS", obj=d, strs=[b"c", b"new"])
    txn = b""
    for kind, delta in ((4, 0), (3, 2), (1, 0), (5, 0), (2, 0)):
        txn += struct.pack("<Bqq", kind | (0x80 if kind == 4 else 0), delta, 64)
    yield "d_txn", req("D_TXN", obj=d, strs=[txn, b"x", b"", b"n", b"", b"k", b"v",
                                              b"k", b"", b"k", b""])
    yield "l_append", req("L_APPEND", obj=l, strs=[b"item"])
    yield "l_extend", req("L_EXTEND", obj=l, strs=[b"a", b"bb", b"ccc", b"dddd"])
    yield "l_get", req("L_GET", obj=l, a=-1, b=64)
    yield "l_set", req("L_SET", obj=l, a=0, strs=[b"zz"])
    yield "l_insert", req("L_INSERT", obj=l, a=1, strs=[b"ins"])
    yield "l_pop", req("L_POP", obj=l, a=1, b=64)
    yield "l_remove", req("L_REMOVE", obj=l, strs=[b"bb"])
    yield "l_len", req("L_LEN", obj=l)
    yield "l_clear", req("L_CLEAR", obj=l)
    yield "l_slice", req("L_SLICE", obj=l, a=-3, b=100)
    yield "q_put", req("Q_PUT", obj=q, strs=[b"message"])
    yield "q_get", req("Q_GET", obj=q, b=64)
    yield "q_size", req("Q_SIZE", obj=q)
    for name, obj in (("lock", lk), ("rlock", rl), ("cond", cond)):
        yield "k_acquire_" + name, req("K_ACQUIRE", obj=obj)
        yield "k_release_" + name, req("K_RELEASE", obj=obj)
    yield "s_acquire", req("S_ACQUIRE", obj=sem)
    yield "s_release", req("S_RELEASE", obj=bsem)
    yield "s_value", req("S_VALUE", obj=sem)
    yield "e_set", req("E_SET", obj=ev)
    yield "e_clear", req("E_CLEAR", obj=ev)
    yield "e_isset", req("E_ISSET", obj=ev)
    yield "e_wait", req("E_WAIT", obj=ev)
    yield "c_wait", req("C_WAIT", obj=cond)
    yield "c_notify", req("C_NOTIFY", obj=cond, a=-1)
    yield "b_wait", req("B_WAIT", obj=bar)
    yield "b_abort", req("B_ABORT", obj=bar)
    yield "b_reset", req("B_RESET", obj=bar)
    yield "b_broken", req("B_BROKEN", obj=bar)
    yield "v_get", req("V_GET", obj=val)
    yield "v_set", req("V_SET", obj=val, b=42)
    yield "v_add", req("V_ADD", obj=val, a=-3)
    yield "a_len", req("A_LEN", obj=arr)
    yield "a_get", req("A_GET", obj=arr, a=3)
    yield "a_set", req("A_SET", obj=arr, a=3, b=-9)
    yield "a_read", req("A_READ", obj=arr, a=2, b=5)
    yield "a_write", req("A_WRITE", obj=arr, a=4, strs=[struct.pack("<3q", 1, -2, 3)])
    yield "type", req("TYPE", strs=[b"dict"])
    yield "remove", req("REMOVE", strs=[b"queue"])
    yield "ping", req("PING")
    yield "shutdown", req("SHUTDOWN")
    yield "rep_items", rep("D_ITEMS", strs=[b"k", b"v", b"k2", b"v2"], a=2)
    yield "rep_error", rep("D_GET", status=-4082)
    yield "rep_txn", rep("D_TXN", strs=[struct.pack("<iq", 0, 7) + b"val"], a=1)
    yield "hs_hello", bytes([3]) + b"MPMH" + struct.pack("<HHHH", 1, 1, 2, 0) + bytes(32)
    yield "hs_auth", bytes([3]) + b"MPMA" + struct.pack("<HH", 1, 2) + bytes(64)
    yield "hs_welcome", bytes([3]) + b"MPMW" + struct.pack("<iIIQ", 0, 2, 1, 1 << 24) + bytes(32)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

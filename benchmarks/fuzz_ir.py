"""Fuzz :func:`bnnconvert.ir.read` with mutated real models.

Every input must either be accepted (and then also survive ``inspect``,
``write`` and a second ``read``) or be rejected with ``FlatbufferProblem``; any other
exception is a crash, and any input that takes longer than ``--timeout``
seconds is a hang. Mutations of real LCE flatbuffers: bit flips, byte
overwrites, truncation, splicing two models, and int32/int16 writes at the
offsets of flatbuffer tables, vtables and vector length fields (where a
corrupt value does the most damage). Deterministic for a given ``--seed``.

    .venv/bin/python benchmarks/fuzz_ir.py --inputs 100000 --processes 2

Seed models: the given ``--model`` files, else the bundled digits BNN (with
bnnconvert metadata embedded) and a small BinaryDenseNet, converted on the
spot (TensorFlow is imported once, in the parent process). Crashing and
hanging inputs are saved under ``--out`` for reproduction. Exits 1 on any
crash or hang.

``--atheris`` runs the same check coverage-guided instead (one process,
libFuzzer's corpus evolution; half the mutations are the structured ones
above, half libFuzzer's own), printing counts every 10,000 inputs; a crash
stops it with libFuzzer's report and a non-zero exit.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bnnconvert import ir
from bnnconvert.errors import FlatbufferProblem
from bnnconvert.inspect import inspect_model
from bnnconvert.reports.inspect_text import render_markdown

INTERESTING_INT32 = [0, 1, -1, 2, 4, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, -0x80000000, 0x10000]


def table_offsets(data: bytes) -> list[int]:
    """Byte offsets of tables, their vtables and vector length fields in a valid model."""
    from bnnconvert.ir.schema import fb

    offsets = {0}
    root = fb.Model.GetRootAs(data, 0)

    def add_table(obj: object) -> None:
        tab = obj._tab
        offsets.add(tab.Pos)
        vtable = tab.Pos - int.from_bytes(data[tab.Pos : tab.Pos + 4], "little", signed=True)
        offsets.update(range(vtable, vtable + 16, 2))
        for slot in range(12):
            o = tab.Offset(4 + 2 * slot)
            if o:
                offsets.add(tab.Pos + o)
                target = tab.Pos + o + int.from_bytes(data[tab.Pos + o : tab.Pos + o + 4], "little")
                if target < len(data):
                    offsets.add(target)

    add_table(root)
    for i in range(root.OperatorCodesLength()):
        add_table(root.OperatorCodes(i))
    for i in range(root.BuffersLength()):
        add_table(root.Buffers(i))
    for i in range(root.MetadataLength()):
        add_table(root.Metadata(i))
    for i in range(root.SignatureDefsLength()):
        add_table(root.SignatureDefs(i))
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        add_table(graph)
        for i in range(graph.TensorsLength()):
            add_table(graph.Tensors(i))
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            add_table(op)
            if op.BuiltinOptions() is not None:
                offsets.add(op.BuiltinOptions().Pos)
    return sorted(o for o in offsets if 0 <= o < len(data) - 4)


@dataclass
class Seed:
    data: bytes
    offsets: list[int]


def mutate(rng: random.Random, seeds: list[Seed]) -> tuple[str, bytes]:
    seed = rng.choice(seeds)
    buf = bytearray(seed.data)
    kinds = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.choice(["bitflip", "bytes", "truncate", "splice", "int32", "int32", "int16"])
        kinds.append(kind)
        if kind == "bitflip":
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
        elif kind == "bytes":
            i = rng.randrange(len(buf))
            buf[i : i + rng.randint(1, 16)] = rng.randbytes(rng.randint(1, 16))
        elif kind == "truncate":
            del buf[rng.randrange(len(buf)) :]
        elif kind == "splice":
            other = rng.choice(seeds).data
            cut, at = rng.randrange(len(buf) + 1), rng.randrange(len(other))
            buf = buf[:cut] + bytearray(other[at:])
        else:
            width = 4 if kind == "int32" else 2
            at = rng.choice(seed.offsets) + rng.choice([0, 0, 4, 8, -4])
            if rng.random() < 0.5:
                value = rng.choice([*INTERESTING_INT32, len(buf), len(buf) - at, -len(buf)])
            else:
                value = rng.getrandbits(32) - (1 << 31)
            value &= (1 << (8 * width)) - 1
            if 0 <= at <= len(buf) - width:
                buf[at : at + width] = value.to_bytes(width, "little")
        if not buf:
            buf = bytearray(rng.randbytes(rng.randint(0, 64)))
    return "+".join(kinds), bytes(buf)


class Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Timeout


@dataclass
class Tally:
    accepted: int = 0
    rejected: int = 0
    crashed: int = 0
    hung: int = 0
    slowest: float = 0.0
    slowest_input: str = ""  # "CHUNK_SEED:N kind", for --replay
    problems: list[str] = field(default_factory=list)


def check_one(data: bytes) -> str:
    """``accepted`` or ``rejected``; raises on a crash.

    An accepted model must also survive ``inspect`` and a ``write`` + ``read``.
    """
    try:
        model = ir.read(data)
    except FlatbufferProblem as e:
        if "\n" in str(e):
            raise AssertionError(f"multi-line error: {e!r}") from e
        return "rejected"
    render_markdown(inspect_model(data))
    ir.read(ir.write(model))
    return "accepted"


def run_chunk(args: tuple[list[Seed], int, int, float, str]) -> Tally:
    seeds, seed, count, timeout, out_dir = args
    rng = random.Random(seed)
    signal.signal(signal.SIGALRM, _alarm)
    tally = Tally()
    for n in range(count):
        kind, data = mutate(rng, seeds)
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            outcome = check_one(data)
        except Timeout:
            outcome = "hung"
        except Exception:  # the point of a fuzzer: record anything else
            outcome = "crashed"
            tally.problems.append(f"{kind}: {traceback.format_exc(limit=-2)}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - start
        if elapsed > tally.slowest:
            tally.slowest, tally.slowest_input = elapsed, f"{seed}:{n} {kind}"
        if outcome == "hung" or elapsed > timeout:
            outcome = "hung"
            tally.problems.append(f"{kind}: took {elapsed:.2f} s")
        setattr(tally, outcome, getattr(tally, outcome) + 1)
        if outcome in ("crashed", "hung"):
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            Path(out_dir, f"{outcome}-{seed}-{n}.tflite").write_bytes(data)
    return tally


def default_seeds() -> list[bytes]:
    """The bundled digits BNN (with bnnconvert metadata and labels) and a small BinaryDenseNet."""
    from bnnconvert import _tf, checkpoint, metadata, models

    digits = Path(__file__).resolve().parents[1] / "models/digits"
    trained = bytes(_tf.lce().convert_keras_model(checkpoint.load(digits / "model.keras").model))
    trained = metadata.embed_metadata(
        trained,
        name="digits",
        target="arm64",
        labels=metadata.load_labels(digits / "labels.txt"),
    )
    _tf.keras().utils.set_random_seed(0)  # the same seed bytes on every run, for --replay
    small = models.binary_densenet("binarydensenet_digits", input_shape=(16, 16, 1), num_classes=4)
    return [trained, bytes(_tf.lce().convert_keras_model(small))]


def replay(seeds: list[Seed], which: str) -> int:
    """Regenerate input N of the chunk seeded CHUNK_SEED, run it and time it."""
    chunk_seed, n = (int(part) for part in which.split(":"))
    rng = random.Random(chunk_seed)
    for _ in range(n + 1):
        kind, data = mutate(rng, seeds)
    start = time.perf_counter()
    outcome = check_one(data)
    print(f"{which} {kind}: {outcome} in {time.perf_counter() - start:.3f} s ({len(data)} bytes)")
    return 0


def run_atheris(seeds: list[Seed], runs: int, timeout: float, seed: int) -> int:
    import atheris

    atheris.instrument_all()
    counts = Counter()

    def test_one(data: bytes) -> None:
        counts[check_one(data)] += 1
        n = sum(counts.values())
        if n % 10_000 == 0:
            print(
                f"atheris: {n} inputs, {counts['accepted']} accepted, "
                f"{counts['rejected']} rejected",
                flush=True,
            )

    def mutator(data: bytes, max_size: int, mutation_seed: int) -> bytes:
        rng = random.Random(mutation_seed)
        if data and rng.random() < 0.5:
            return atheris.Mutate(data[:max_size], max_size)
        return mutate(rng, seeds)[1][:max_size]

    max_len = 2 * max(len(s.data) for s in seeds)
    argv = [
        sys.argv[0],
        f"-runs={runs}",
        f"-max_len={max_len}",
        f"-timeout={max(1, round(timeout))}",
        f"-seed={seed + 1}",
    ]
    atheris.Setup(argv, test_one, custom_mutator=mutator)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per input")
    parser.add_argument("--model", type=Path, action="append", help="seed model (repeatable)")
    parser.add_argument("--out", default="fuzz-findings")
    parser.add_argument("--replay", metavar="CHUNK_SEED:N", help="rerun one input and time it")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, one process")
    args = parser.parse_args(argv)

    raw = [p.read_bytes() for p in args.model] if args.model else default_seeds()
    seeds = [Seed(d, table_offsets(d)) for d in raw]
    if args.replay:
        return replay(seeds, args.replay)
    if args.atheris:
        return run_atheris(seeds, args.inputs, args.timeout, args.seed)
    chunks = max(args.processes * 8, 1)
    per = [args.inputs // chunks + (i < args.inputs % chunks) for i in range(chunks)]
    jobs = [(seeds, args.seed * 1000 + i, n, args.timeout, args.out) for i, n in enumerate(per)]
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        tallies = pool.map(run_chunk, jobs)
    elapsed = time.perf_counter() - start

    total = Tally()
    for t in tallies:
        for name in ("accepted", "rejected", "crashed", "hung"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        if t.slowest > total.slowest:
            total.slowest, total.slowest_input = t.slowest, t.slowest_input
        total.problems += t.problems
    n = total.accepted + total.rejected + total.crashed + total.hung
    print(f"seed models: {len(seeds)} ({', '.join(f'{len(s.data)} B' for s in seeds)})")
    print("| inputs | accepted | rejected | crashed | hung | slowest | inputs/s | processes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {n} | {total.accepted} | {total.rejected} | {total.crashed} | {total.hung} "
        f"| {total.slowest:.3f} s | {n / elapsed:.0f} | {args.processes} |"
    )
    print(f"slowest input: {total.slowest_input} ({total.slowest:.3f} s; --replay to rerun it)")
    last_lines = Counter(p.strip().splitlines()[-1] for p in total.problems)
    for line, count in last_lines.most_common(20):
        print(f"{count:6d}  {line}", file=sys.stderr)
    for problem in total.problems[:3]:
        print(problem, file=sys.stderr)
    return 1 if total.crashed or total.hung else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark in turn: ``python -m benchmarks`` (or ``make bench``)."""

import importlib
import pkgutil
import sys

import benchmarks


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    chosen = [n for n in names if not sys.argv[1:] or n in sys.argv[1:]]
    for name in chosen:
        print(f"\n=== {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())

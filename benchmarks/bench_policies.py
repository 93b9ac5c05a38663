"""Foundation benchmarks: the table that ``banditkit bench`` prints.

Run: python benchmarks/bench_policies.py [--rounds 50000] [--repeats 3]
"""

import sys

from banditkit.cli import app

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]])

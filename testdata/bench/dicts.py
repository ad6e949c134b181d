# The "python" workload of `make bench`: build 200k small dicts and
# serialise them, run with PYTHONMALLOC=malloc so every object allocation
# goes through the C allocator.
import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
rows = [{"id": i, "name": "item%d" % i, "score": i * 0.5, "tags": ["a", str(i % 7)]} for i in range(n)]
data = json.dumps(rows)
if len(data) < n:
    sys.exit(1)

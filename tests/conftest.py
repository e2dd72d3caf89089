import os

# Tests are sized for a 2-core CPU; keep XLA from spreading work over more threads than that.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")

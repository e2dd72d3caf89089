import tempfile

import jax

# Tests compile the same programs more than once (the command and the loop tests build identical
# chunks); a per-session persistent cache turns the repeats into loads.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="qvpo-mjx-xla-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

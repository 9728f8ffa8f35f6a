"""JAX's persistent compilation cache for the command-line scripts."""

import os

import jax


def use_persistent_cache(path=None, min_compile_time_s=0.5):
    """Turn on JAX's persistent compilation cache for this process, so that a second run of a
    script loads its compiled programs instead of compiling them again. The command-line scripts
    call this; library code never does. `path` defaults to an already configured cache
    (JAX_COMPILATION_CACHE_DIR), else $JAXMD_EFIELD_CACHE, else ~/.cache/jaxmd_efield/xla.
    Programs that compiled faster than `min_compile_time_s` seconds are not stored. Returns the
    cache directory."""
    path = (path or jax.config.jax_compilation_cache_dir or os.environ.get("JAXMD_EFIELD_CACHE")
            or os.path.join(os.path.expanduser("~"), ".cache", "jaxmd_efield", "xla"))
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    return str(path)

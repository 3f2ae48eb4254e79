"""Files: images (``images``), run reports (``report``), checkpoints (``checkpoint``), the persistent caches
(``target_cache``, ``compilation_cache``). Everything written here is written atomically."""

"""``jaxstyle serve``: a local web studio over the Gatys driver and the fast method.

- :mod:`.forms`: request fields -> a checked :class:`~jaxstyle.StyleConfig` (the CLI's option types, field names
  and messages), uploads sniffed and read with the CLI's image loader;
- :mod:`.jobs`: the run queue: one worker thread per device running :func:`~jaxstyle.gatys.run_stylize` (or a
  :func:`~jaxstyle.gatys.stylize_many` sweep) with a progress callback, cancel and a one-line error per failure;
- :mod:`.app`: the aiohttp application (JSON API, Server-Sent Events, the static page), :mod:`.server` runs it.

The API is documented in docs/studio.md.
"""

"""Live detection: `arnet watch` scores cameras continuously into an event store.

- `sources`: stream URLs, video files, webcams and growing frame folders as frame readers;
- `camera`: a thread per camera that reads, reconnects with backoff and cuts segments;
- `scorer`: segments of all cameras encoded together with the checkpoint's backbone, then
  scored by its model (per-segment models exactly; temporal ones over a causal window);
- `tracker`: alerts from scores (hysteresis, minimum length, merging);
- `watch`: the loop tying them to the event store (`arnet.store`);
- `command`: the `arnet watch` and `arnet alerts` command lines.
"""
